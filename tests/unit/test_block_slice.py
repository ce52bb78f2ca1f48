"""A blocking stream read never asks Redis to wait as long as the socket timeout allows."""

from __future__ import annotations

import pytest

from genq import constants as c
from genq.chunks import block_slice_ms

SLICE = c.REDIS_BLOCK_SLICE_MS


@pytest.mark.parametrize(
    ("asked_ms", "sliced_ms"),
    [
        (0, 1),  # BLOCK 0 would mean "forever"
        (-5, 1),
        (1, 1),
        (SLICE - 1, SLICE - 1),
        (SLICE, SLICE),
        (SLICE + 1, SLICE),
        (25_000, SLICE),  # a 25 s long poll is several reads
    ],
)
def test_block_slice(asked_ms: int, sliced_ms: int) -> None:
    assert block_slice_ms(asked_ms) == sliced_ms


def test_a_slice_ends_well_inside_the_socket_timeout() -> None:
    margin_seconds = c.REDIS_SOCKET_TIMEOUT_SECONDS - SLICE / 1000
    assert margin_seconds >= 2, "a loaded Redis or event loop would hit the socket timeout"
