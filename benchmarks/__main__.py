"""``python -m benchmarks [--store sqlite|postgres] [core|gateway|e2e|webhooks ...]``: run the
named benchmarks (default all) against the chosen result store (default SQLite)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from pathlib import Path

from benchmarks.stores import STORES

SUITES = (
    "core",
    "gateway",
    "e2e",
    "webhooks",
    "openai_door",
    "batches",
    "fleet",
    "fleet_fair",
    "brokers",
    "hosts",
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"of {SUITES} (default all)")
    parser.add_argument("--store", choices=STORES, default="sqlite")
    args = parser.parse_args(argv)
    unknown = [name for name in args.suites if name not in SUITES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {SUITES}")
    results = {}
    for name in args.suites or SUITES:
        module = importlib.import_module(f"benchmarks.{name}")
        if "store" in inspect.signature(module.main).parameters:
            results[name] = module.main(store=args.store)
        else:
            print(f"({name} runs on SQLite only)")
            results[name] = module.main()
    out = Path("artifacts") / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nall numbers: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
