"""genq's adaptations of kombu, Celery and redis-py internals (``genq.internals``,
``workers.internals``) fail loudly here, not in production, when the installed libraries are
not the ones they mirror."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from celery.worker.consumer import Consumer
from kombu.transport import redis as kombu_redis
from redis.connection import Connection

from genq.internals import Transport, transport_for, versions
from genq.internals.versions import MIRRORED_VERSIONS, unmirrored_versions

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

# What each adaptation reaches into (on the class; instance attributes such as kombu's
# ``_queue_cycle`` are left to the integration tests): a release that renames or drops one
# would break it silently.
REACHED_INTO = [
    (kombu_redis.Channel, "_brpop_read"),
    (kombu_redis.Channel, "_create_client"),
    (kombu_redis.Channel, "_in_poll"),
    (kombu_redis.Channel, "global_keyprefix"),
    (kombu_redis.Transport, "_deliver"),
    (kombu_redis.QoS, "pipe_or_acquire"),
    (kombu_redis.QoS, "_remove_from_indices"),
    (kombu_redis.QoS, "unacked_key"),
    (kombu_redis.QoS, "unacked_index_key"),
    (kombu_redis.QoS, "restore_unacked"),
    (kombu_redis.QoS, "restore_visible"),
    (Consumer, "on_send_event_buffered"),
    (Consumer, "_flush_events"),
    (Consumer, "on_decode_error"),
    (Consumer, "on_unknown_message"),
    (Consumer, "on_unknown_task"),
    (Consumer, "on_invalid_task"),
    (Connection, "pack_commands"),
    (Connection, "send_packed_command"),
    (Connection, "can_read"),
    (Connection, "read_response"),
    (Connection, "disconnect"),
]


def test_the_installed_libraries_are_the_ones_mirrored() -> None:
    problems = unmirrored_versions()
    assert not problems, (
        "genq's adaptations mirror other versions than these; read the new release's source "
        "of what they adapt (genq/internals/ and workers/internals/__init__.py) before "
        "widening the range:\n" + "\n".join(problems)
    )


@pytest.mark.parametrize(("owner", "name"), REACHED_INTO, ids=lambda x: getattr(x, "__name__", x))
def test_what_the_adaptations_reach_into_is_there(owner: type, name: str) -> None:
    assert name in dir(owner) or name in getattr(owner, "__annotations__", {}), (
        f"{owner.__module__}.{owner.__qualname__} has no {name} any more"
    )


def test_a_version_outside_the_range_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {"kombu": (5, 8), "celery": (5, 6), "redis": None}
    monkeypatch.setattr(versions, "installed_version", installed.get)
    problems = unmirrored_versions()
    assert len(problems) == 2
    assert problems[0].startswith("kombu 5.8 is outside 5.6 to below 5.8")
    assert problems[1].startswith("redis not installed")


def _declared_ranges() -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    declared = {}
    for requirement in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        match = re.fullmatch(
            r"([a-z]+)(?:\[[^\]]*\])?>=(\d+)\.(\d+)(?:\.\d+)?,<(\d+)\.?(\d+)?", requirement
        )
        if match and match[1] in MIRRORED_VERSIONS:
            lowest = (int(match[2]), int(match[3]))
            beyond = (int(match[4]), int(match[5] or 0))
            declared[match[1]] = (lowest, beyond)
    return declared


def test_pyproject_allows_only_the_mirrored_versions() -> None:
    assert _declared_ranges() == MIRRORED_VERSIONS


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://127.0.0.1:6379/0", Transport),
        ("rediss://cache.example:6380/1", Transport),
        ("REDIS://127.0.0.1", Transport),
        ("amqp://guest@rabbit//", None),
        ("sentinel://127.0.0.1:26379", None),  # kombu's SentinelTransport, not adapted
        ("memory://", None),
    ],
)
def test_only_a_redis_broker_gets_genqs_transport(url: str, transport: type | None) -> None:
    assert transport_for(url) is transport
