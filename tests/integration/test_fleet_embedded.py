"""The embedded llama.cpp runtime as one endpoint of a fleet, next to a fake one: each job goes
to the endpoint serving its model, and the embedded endpoint's one slot is never shared."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas import JobStatus
from tests.fakes.runtime_server import FakeRuntime
from tests.integration.conftest import Stack
from tests.support import EmbeddedRuntime, GenqProcess

pytestmark = [pytest.mark.integration, pytest.mark.runtime]


def test_embedded_endpoint_serves_its_model_one_job_at_a_time(
    stack_env: dict[str, str],
    start_genq: Callable[..., GenqProcess],
    embedded_runtime: EmbeddedRuntime,
    tmp_path: Path,
) -> None:
    with FakeRuntime(known_models=["fake-model"], slots=1, record_requests=True) as fake:
        fleet = tmp_path / "runtimes.toml"
        fleet.write_text(
            "[[endpoints]]\n"
            'name = "laptop"\nkind = "embedded"\n'
            f'url = "{embedded_runtime.url}"\nmodels = ["{embedded_runtime.model}"]\nslots = 1\n\n'
            "[[endpoints]]\n"
            f'name = "fake"\nkind = "openai"\nurl = "{fake.url}"\nslots = 1\n'  # discovers
        )
        env = {**stack_env, "GENQ_RUNTIMES_FILE": str(fleet), "GENQ_FLEET_TICK_SECONDS": "0.2"}
        stack = Stack(env=env, start_genq=start_genq)
        stack.worker("--concurrency", "2")
        client = stack.client()
        real = [
            client.submit(
                {
                    "model": embedded_runtime.model,
                    "kind": "completion",
                    "prompt": f"Count to {n}:",
                    "max_tokens": 8,
                    "temperature": 0,
                }
            ).id
            for n in (3, 4, 5)
        ]
        fakes = [
            client.submit(
                {"model": "fake-model", "messages": [{"role": "user", "content": f"f {n}"}]}
            ).id
            for n in range(3)
        ]
        done = [client.wait(i, timeout=180) for i in real + fakes]
        assert [r.status for r in done] == [JobStatus.SUCCEEDED] * 6, [r.error for r in done]
        assert all(r.result is not None and r.result.text for r in done[:3])
        assert [e["model"] for e in fake.stats()["request_log"]] == ["fake-model"] * 3

        # One slot on the embedded endpoint: its jobs ran one after the other.
        spans = sorted((r.started_at, r.finished_at) for r in done[:3])
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end is not None and start is not None and end <= start, spans
        for client_ in stack.clients:
            client_.close()
