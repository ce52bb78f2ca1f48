"""``genq worker`` starts once: SIGTERM's remap to the cold shutdown is set before billiard is
imported, so ``ensure_cold_sigterm`` has no reason to re-execute the process (a second start
of the whole interpreter and its imports, about 1.5 s of CPU, for every worker)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.environment import process_env

# Runs ``genq worker`` with a queue role that does not exist, so it stops with a usage error
# right after the point where it would re-execute; ``os.execv`` only reports that it was called.
SCRIPT = """
import os, sys
os.environ.pop("REMAP_SIGTERM", None)
def execv(*args):
    print("re-executed", flush=True)
    raise SystemExit(9)
os.execv = execv
sys.argv = ["genq", "worker", "--queues", "no-such-role"]
from genq.cli import main
main()
"""


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_genq_worker_sets_the_cold_sigterm_without_starting_twice() -> None:
    done = _run(SCRIPT)
    assert "re-executed" not in done.stdout, done.stdout
    assert done.returncode not in (0, 9), done.stdout + done.stderr
    assert "unknown queue role" in done.stderr


def test_a_process_that_imported_billiard_first_is_still_re_executed() -> None:
    """The fallback: billiard already read REMAP_SIGTERM unset, so only a new process can
    have SIGTERM start the cold shutdown."""
    script = SCRIPT.replace(
        "from genq.cli import main", "import billiard.common\nfrom genq.cli import main"
    )
    done = _run(script)
    assert "re-executed" in done.stdout and done.returncode == 9, done.stdout + done.stderr
