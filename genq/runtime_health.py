"""Whether an LLM runtime answers: one probe per runtime kind, used by the runtime adapters'
``health()`` (``workers.runtimes``) and by the gateway's ``/readyz``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from genq.runtime_errors import describe_target, error_from_response, json_object, transport_errors
from schemas import PermanentError, TransientError

__all__ = ["RUNTIME_KINDS", "RuntimeHealth", "RuntimeProbe", "list_models", "probe_runtime"]


@dataclass(frozen=True)
class RuntimeHealth:
    """Whether the runtime answers, and a line a person can read."""

    ok: bool
    detail: str


def _openai_names(payload: dict[str, Any]) -> list[str]:
    return [str(m.get("id")) for m in payload.get("data") or [] if isinstance(m, dict)]


def _ollama_names(payload: dict[str, Any]) -> list[str]:
    return [str(m.get("name")) for m in payload.get("models") or [] if isinstance(m, dict)]


def _openai_models(payload: dict[str, Any]) -> str:
    names = _openai_names(payload)
    return f"{len(names)} model(s): {', '.join(names[:10])}" if names else "no models listed"


def _ollama_models(payload: dict[str, Any]) -> str:
    names = _ollama_names(payload)
    return f"{len(names)} model(s): {', '.join(names[:10])}" if names else "no models pulled"


# Runtime kind -> the path that lists its models, and how to summarize the list.
HEALTH_PROBES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "openai": ("/v1/models", _openai_models),
    "ollama": ("/api/tags", _ollama_models),
}
MODEL_NAMES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "openai": _openai_names,
    "ollama": _ollama_names,
}
RUNTIME_KINDS = tuple(HEALTH_PROBES)


def list_models(kind: str, client: httpx.Client) -> list[str]:
    """The names of the models the ``kind`` runtime serves, as its model list gives them.
    Raises ``TransientError``/``PermanentError`` when the runtime does not answer with one."""
    if kind not in HEALTH_PROBES:
        raise ValueError(f"unknown runtime kind {kind!r}; use one of {', '.join(RUNTIME_KINDS)}")
    path = HEALTH_PROBES[kind][0]
    target = describe_target(client, kind, path)
    with transport_errors(target):
        response = client.get(path)
    if response.status_code != 200:
        raise error_from_response(response, target)
    return MODEL_NAMES[kind](json_object(response.content, target))


def probe_runtime(kind: str, client: httpx.Client) -> RuntimeHealth:
    """GET the ``kind`` runtime's model list ("openai" or "ollama") through ``client``: healthy
    on 200, with the models as the detail. Never raises for the runtime's sake; an unknown
    ``kind`` is a ValueError."""
    if kind not in HEALTH_PROBES:
        raise ValueError(f"unknown runtime kind {kind!r}; use one of {', '.join(RUNTIME_KINDS)}")
    path, summarize = HEALTH_PROBES[kind]
    target = describe_target(client, kind, path)
    try:
        with transport_errors(target):
            response = client.get(path)
        if response.status_code != 200:
            return RuntimeHealth(ok=False, detail=error_from_response(response, target).message)
        summary = summarize(json_object(response.content, target))
        return RuntimeHealth(ok=True, detail=f"{target}: {summary}")
    except (TransientError, PermanentError) as exc:
        return RuntimeHealth(ok=False, detail=exc.message)


@dataclass(frozen=True)
class RuntimeProbe:
    """A runtime's health check bound to its kind and client: what a process that only
    watches the runtime (the gateway's ``/readyz``) holds instead of an adapter."""

    kind: str
    client: httpx.Client

    def health(self) -> RuntimeHealth:
        """Probe the runtime without raising."""
        return probe_runtime(self.kind, self.client)

    def models(self) -> list[str]:
        """The runtime's model names (``list_models``); raises if it does not answer."""
        return list_models(self.kind, self.client)
