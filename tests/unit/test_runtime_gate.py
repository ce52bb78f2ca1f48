"""The runtime gate: when a worker probes its runtime before the next job, and for how long."""

from __future__ import annotations

import pytest

from workers.runtime_gate import RuntimeGate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("answers", "wait_seconds", "expected", "probes", "waited"),
    [
        ([True], 10.0, True, 1, 0.0),  # first job: probed once, answers
        ([False, False, True], 10.0, True, 3, 2.0),  # answers after two polls
        ([False] * 100, 3.0, False, 4, 3.0),  # never answers: gives up at the wait
        ([False] * 100, 0.0, False, 1, 0.0),  # no wait: one probe, then try the job anyway
        ([False] * 100, 2.5, False, 4, 2.5),  # the last poll is cut to the deadline
    ],
)
def test_waits_for_the_runtime_to_answer(
    answers: list[bool], wait_seconds: float, expected: bool, probes: int, waited: float
) -> None:
    clock, asked = Clock(), []

    def probe() -> bool:
        asked.append(clock.now)
        return answers[len(asked) - 1]

    gate = RuntimeGate(probe, wait_seconds, poll_seconds=1.0, clock=clock, sleep=clock.sleep)
    assert gate.wait_until_answering() is expected
    assert len(asked) == probes
    assert clock.now == waited


def test_a_runtime_known_to_answer_is_not_probed_until_found_unreachable() -> None:
    asked: list[int] = []

    def probe() -> bool:
        asked.append(1)
        return True

    gate = RuntimeGate(probe, wait_seconds=5.0)
    assert gate.wait_until_answering() and gate.wait_until_answering()
    assert len(asked) == 1
    gate.mark_unreachable()
    assert gate.wait_until_answering()
    assert len(asked) == 2
