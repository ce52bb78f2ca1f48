"""Benchmarks run by ``make bench``: numbers and ratios measured side by side in one run."""
