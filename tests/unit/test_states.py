import pytest

from schemas import JobStatus, can_transition, sources_for

Q, R, S, F, C, E, D = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.EXPIRED,
    JobStatus.DEAD_LETTERED,
)


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        (Q, R, True),
        (Q, C, True),
        (Q, E, True),
        (Q, D, True),
        (Q, S, False),
        (Q, F, False),
        (R, S, True),
        (R, F, True),
        (R, C, True),
        (R, E, True),
        (R, D, True),
        (R, Q, True),
        (R, R, False),
        (S, Q, False),
        (S, F, False),
        (F, Q, False),
        (C, R, False),
        (E, Q, False),
        (D, Q, True),
        (D, R, False),
    ],
)
def test_transition_table(source: JobStatus, target: JobStatus, allowed: bool) -> None:
    assert can_transition(source, target) is allowed


@pytest.mark.parametrize("status", [S, F, C, E, D])
def test_terminal_states_are_final_except_requeue(status: JobStatus) -> None:
    assert status.terminal
    reachable = {t for t in JobStatus if can_transition(status, t)}
    assert reachable == ({Q} if status is D else set())


def test_sources_for_is_the_inverse_of_the_guard() -> None:
    for target in JobStatus:
        assert sources_for(target) == {s for s in JobStatus if can_transition(s, target)}
