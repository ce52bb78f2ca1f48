"""What fleet dispatch costs a job: the core benchmark's throughput and latency rounds
(``benchmarks.core.overhead``) with ``GENQ_FLEET_DISPATCH`` true (the default) and false (the
direct path), alternating, on one store. Prints one line per run; figures in docs/benchmarks.md.

Run: ``python -m benchmarks.dispatch_ab [sqlite|postgres] [pairs]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import core
from benchmarks.stores import BenchStore


def run(store: str, dispatch: bool, rounds: int = 3) -> dict[str, Any]:
    """One ``core.overhead`` run with fleet dispatch on or off."""
    base = core._env
    core._env = lambda *args: {**base(*args), "GENQ_FLEET_DISPATCH": str(dispatch).lower()}
    try:
        with tempfile.TemporaryDirectory(prefix="genq-bench-dispatch-") as tmp_name:
            tmp = Path(tmp_name)
            with BenchStore(store, tmp) as bench_store:
                return core.overhead(tmp, bench_store, rounds=rounds)
    finally:
        core._env = base


def main(store: str = "sqlite", pairs: int = 2) -> None:
    for _ in range(pairs):
        for dispatch in (True, False):
            r = run(store, dispatch)
            thr, lat = r["throughput_jobs_per_s"], r["latency_ms"]
            cpu = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_ms_per_job"].items())
            print(
                f"dispatch {'on ' if dispatch else 'off'}: {thr['genq']:.0f} jobs/s, raw Celery "
                f"{thr['raw_celery']:.0f}, ratio {thr['ratio']:.2f}; idle overhead p50 "
                f"{lat['overhead_p50']:.1f} ms; CPU ms a job: {cpu}",
                flush=True,
            )


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["sqlite"]), *(int(a) for a in sys.argv[2:3]))
