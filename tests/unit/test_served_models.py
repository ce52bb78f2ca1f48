"""The models the OpenAI routes serve: the default, and the runtime's list (MockTransport)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from genq.runtime_health import RuntimeProbe
from producers.gateway.served_models import ServedModels


def served(kind: str, answer: Any, ttl: float = 60.0) -> tuple[ServedModels, list[str]]:
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if isinstance(answer, int):
            return httpx.Response(answer, json={"error": {"message": "down"}})
        return httpx.Response(200, json=answer)

    client = httpx.Client(base_url="http://runtime", transport=httpx.MockTransport(handle))
    return ServedModels(RuntimeProbe(kind, client), "default-model", ttl), asked


OPENAI_LIST = {"object": "list", "data": [{"id": "a"}, {"id": "default-model"}, {"id": "b"}]}
OLLAMA_TAGS = {"models": [{"name": "llama3:latest"}, {"name": "qwen:7b"}]}


@pytest.mark.parametrize(
    ("kind", "answer", "model", "expected"),
    [
        ("openai", OPENAI_LIST, "a", True),
        ("openai", OPENAI_LIST, "c", False),
        ("openai", {"data": []}, "default-model", True),
        ("ollama", OLLAMA_TAGS, "llama3", True),
        ("ollama", OLLAMA_TAGS, "qwen:7b", True),
        ("ollama", OLLAMA_TAGS, "qwen", False),
        ("openai", 503, "anything", True),  # the runtime cannot say: let the worker find out
    ],
)
def test_serves(kind: str, answer: Any, model: str, expected: bool) -> None:
    models, _asked = served(kind, answer)
    assert models.serves(model) is expected


def test_names_default_first_each_once() -> None:
    models, _asked = served("openai", OPENAI_LIST)
    assert models.names() == ["default-model", "a", "b"]
    down, _asked = served("openai", 500)
    assert down.names() == ["default-model"]


def test_the_default_model_needs_no_question_and_the_list_is_cached() -> None:
    models, asked = served("openai", OPENAI_LIST)
    assert models.serves("default-model") and asked == []
    assert models.serves("a") and models.serves("b") and not models.serves("c")
    assert asked == ["/v1/models"]
    uncached, asked_each_time = served("openai", OPENAI_LIST, ttl=0)
    uncached.serves("a")
    uncached.serves("a")
    assert len(asked_each_time) == 2
