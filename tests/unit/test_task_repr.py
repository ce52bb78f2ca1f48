"""What Flower shows of a job's task: its id, tenant, lane and priority, as a dict literal."""

from __future__ import annotations

import ast

import pytest

from genq.dispatch import task_kwargs_repr


@pytest.mark.parametrize(
    ("tenant", "lane", "priority"),
    [
        ("default", "interactive", 5),
        ("acme-labs", "batch", 9),
        ("team.a_1", "interactive", 0),
        ("o'brien", "batch", 3),  # quotes survive: Flower parses the repr as a literal
    ],
)
def test_the_repr_is_a_dict_literal_flower_can_parse(tenant: str, lane: str, priority: int) -> None:
    shown = task_kwargs_repr("0b7c-id", tenant=tenant, lane=lane, priority=priority)
    assert ast.literal_eval(shown) == {
        "job_id": "0b7c-id",
        "tenant": tenant,
        "lane": lane,
        "priority": priority,
    }
    assert shown.startswith("{'job_id': '0b7c-id'")  # the id first: the column is narrow
