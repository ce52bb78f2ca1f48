"""``python -m benchmarks [core|gateway|webhooks ...]``: run the named benchmarks (default all)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

SUITES = ("core", "gateway", "webhooks")


def main(argv: list[str]) -> None:
    wanted = argv or list(SUITES)
    unknown = [name for name in wanted if name not in SUITES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {SUITES}")
    results = {}
    for name in wanted:
        module = importlib.import_module(f"benchmarks.{name}")
        results[name] = module.main()
    out = Path("artifacts") / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nall numbers: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
