"""The README's Python example runs, as written, against a real stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Stack
from tests.support.environment import process_env

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "quickstart.py"


def test_quickstart_example_runs(stack: Stack) -> None:
    stack.worker()
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env=process_env({**stack.env, "PYTHONPATH": str(EXAMPLE.parents[2])}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Hello, world!" in out.stdout
    assert "succeeded" in out.stdout and "completion_tokens=4" in out.stdout
