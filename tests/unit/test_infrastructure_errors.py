"""Which failures put an LLM task's message back for another try instead of acking it away."""

from __future__ import annotations

import pytest
import redis

from genq.store import StoreUnavailable
from tasks.generate import INFRASTRUCTURE_ERRORS


@pytest.mark.parametrize(
    "error",
    [
        StoreUnavailable("database is down"),
        redis.ConnectionError("refused"),
        redis.TimeoutError("Timeout reading from socket"),  # a Redis that stopped answering
    ],
)
def test_infrastructure_failures_are_retried(error: Exception) -> None:
    assert isinstance(error, INFRASTRUCTURE_ERRORS)


@pytest.mark.parametrize("error", [ValueError("bad job id"), redis.ResponseError("WRONGTYPE")])
def test_other_failures_are_not(error: Exception) -> None:
    assert not isinstance(error, INFRASTRUCTURE_ERRORS)
