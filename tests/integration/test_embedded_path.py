"""The happy path against the real embedded runtime (llama.cpp + Gemma 3 270M)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from schemas import JobStatus
from tests.integration.conftest import Stack
from tests.support import EmbeddedRuntime, GenqProcess

pytestmark = [pytest.mark.integration, pytest.mark.runtime]


@pytest.fixture
def real_stack(
    stack_env: dict[str, str],
    start_genq: Callable[..., GenqProcess],
    embedded_runtime: EmbeddedRuntime,
) -> Iterator[Stack]:
    env = {
        **stack_env,
        "GENQ_RUNTIME_URL": embedded_runtime.url,
        "GENQ_DEFAULT_MODEL": embedded_runtime.model,
    }
    s = Stack(env=env, start_genq=start_genq)
    yield s
    for client in s.clients:
        client.close()


def test_chat_completion_and_embedding_jobs_succeed(real_stack: Stack) -> None:
    real_stack.worker()
    client = real_stack.client()
    chat = client.submit(
        {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 16, "seed": 1}
    )
    completion = client.submit(
        {
            "kind": "completion",
            "prompt": "The capital of France is",
            "max_tokens": 8,
            "temperature": 0,
        }
    )
    embedding = client.submit({"kind": "embedding", "input": ["red apple", "green pear"]})

    chat_done = client.wait(chat.id, timeout=120)
    assert chat_done.status is JobStatus.SUCCEEDED, chat_done.error
    assert chat_done.result is not None and chat_done.result.text
    assert chat_done.usage is not None
    assert chat_done.usage.prompt_tokens > 0 and 0 < chat_done.usage.completion_tokens <= 16
    assert chat_done.first_token_at is not None

    completion_done = client.wait(completion.id, timeout=120)
    assert completion_done.status is JobStatus.SUCCEEDED, completion_done.error
    assert completion_done.result is not None and completion_done.result.text
    assert completion_done.usage is not None and completion_done.usage.completion_tokens > 0

    embedding_done = client.wait(embedding.id, timeout=120)
    assert embedding_done.status is JobStatus.SUCCEEDED, embedding_done.error
    vectors = embedding_done.result.embeddings if embedding_done.result else None
    assert vectors is not None and len(vectors) == 2
    assert len(vectors[0]) == len(vectors[1]) > 100
    assert vectors[0] != vectors[1]
    assert embedding_done.usage is not None and embedding_done.usage.prompt_tokens > 0

    # The streamed text equals the stored result.
    chunks = list(client.stream(chat.id))
    assert "".join(c.delta for c in chunks if c.type == "delta") == chat_done.result.text
