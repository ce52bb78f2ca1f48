"""Which runtime endpoints there are and which models each serves.

Declared in a TOML or YAML file (``GENQ_RUNTIMES_FILE``) or as a JSON list in ``GENQ_RUNTIMES``::

    [[endpoints]]
    name = "ollama-box"
    kind = "ollama"              # openai | ollama | embedded
    url = "http://10.0.0.5:11434"
    models = ["llama3.2", "qwen2.5"]   # omit to discover them (/v1/models, /api/tags)
    slots = 4                    # requests it runs at once ("auto": adaptive, see docs/fleet.md)
    weight = 1.0                 # preference among equally loaded endpoints

Without either, the single-runtime settings (``GENQ_RUNTIME_URL``, ``GENQ_RUNTIME_KIND``,
``GENQ_RUNTIME_SLOTS``, or the embedded runtime) are a one-endpoint fleet named ``default``
that takes any model, as before.
"""

from __future__ import annotations

import json
import os
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genq.settings import Settings
from schemas import InvalidRequest

__all__ = [
    "ANY_MODEL",
    "DEFAULT_ENDPOINT",
    "Endpoint",
    "Fleet",
    "FleetConfigError",
    "fleet_concurrency",
    "fleet_dispatch",
    "load_fleet",
    "model_matches",
]

ANY_MODEL = "*"  # in an endpoint's models: it takes any model (the one-endpoint fleet)
DEFAULT_ENDPOINT = "default"


class FleetConfigError(InvalidRequest):
    """The fleet's declaration cannot be used; the message says where and why
    (``invalid_request``: the CLI prints it in the error shape, exit code 2)."""


class Endpoint(BaseModel):
    """One runtime endpoint of the fleet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    kind: Literal["openai", "ollama", "embedded"] = "openai"
    url: str | None = None
    models: tuple[str, ...] | None = None  # None: discovered from the runtime's model list
    slots: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = 1
    weight: float = Field(default=1.0, gt=0)
    # The environment variable holding this endpoint's API key (never the key itself).
    api_key_env: str | None = None

    @property
    def protocol(self) -> str:
        """The wire dialect: the embedded llama.cpp server speaks OpenAI's."""
        return "ollama" if self.kind == "ollama" else "openai"

    @property
    def discovers(self) -> bool:
        return self.models is None

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


def model_matches(model: str, names: Iterable[str]) -> bool:
    """Whether ``model`` is among ``names`` (Ollama's implicit ``:latest`` tag included)."""
    listed = set(names)
    if ANY_MODEL in listed:
        return True
    bare = model.removesuffix(":latest")
    return model in listed or bare in listed or f"{bare}:latest" in listed


@dataclass(frozen=True)
class Fleet:
    """The endpoints, in declaration order. ``declared`` is False for the one-endpoint fleet
    made of the single-runtime settings."""

    endpoints: tuple[Endpoint, ...]
    declared: bool

    def by_name(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)

    def models_of(self, endpoint: Endpoint, discovered: Mapping[str, list[str]]) -> list[str]:
        """The models ``endpoint`` serves: declared, else the last discovered list."""
        if endpoint.models is not None:
            return list(endpoint.models)
        return list(discovered.get(endpoint.name) or [])

    def serving(self, model: str, discovered: Mapping[str, list[str]]) -> list[Endpoint]:
        """The endpoints that serve ``model``."""
        return [e for e in self.endpoints if model_matches(model, self.models_of(e, discovered))]

    def model_names(self, discovered: Mapping[str, list[str]]) -> list[str]:
        """Every concrete model name of the fleet, sorted (the wildcard left out)."""
        names = {m for e in self.endpoints for m in self.models_of(e, discovered)}
        return sorted(names - {ANY_MODEL})

    def takes_any_model(self) -> bool:
        return any(e.models is not None and ANY_MODEL in e.models for e in self.endpoints)


def _legacy_endpoint(settings: Settings) -> Endpoint:
    return Endpoint(
        name=DEFAULT_ENDPOINT,
        kind="embedded" if settings.embedded else settings.runtime_kind,
        url=settings.effective_runtime_url,
        models=(ANY_MODEL,),
        slots=settings.runtime_slots,
    )


def _parse_file(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FleetConfigError(f"cannot read the runtimes file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            import yaml  # type: ignore[import-untyped]

            return yaml.safe_load(raw)
        return tomllib.loads(raw.decode())
    except Exception as exc:  # tomllib/yaml raise their own types; say which file
        raise FleetConfigError(f"the runtimes file {path} does not parse: {exc}") from None


def _endpoints_from(raw: Any, source: str, settings: Settings) -> tuple[Endpoint, ...]:
    items = raw.get("endpoints") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise FleetConfigError(f"{source}: expected a non-empty list of endpoints")
    endpoints = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise FleetConfigError(f"{source}: endpoint #{i + 1} is not a table/object")
        if item.get("kind") == "embedded" and not item.get("url"):
            item = {**item, "url": f"http://127.0.0.1:{settings.embedded_port}"}
        if isinstance(item.get("models"), list):
            item = {**item, "models": tuple(str(m) for m in item["models"])}
        try:
            endpoint = Endpoint.model_validate(item)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'endpoint'}: {e['msg']}"
                for e in exc.errors()
            )
            raise FleetConfigError(f"{source}: endpoint #{i + 1}: {problems}") from None
        if not endpoint.url:
            raise FleetConfigError(f"{source}: endpoint {endpoint.name!r} needs a url")
        endpoints.append(endpoint)
    names = [e.name for e in endpoints]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise FleetConfigError(f"{source}: endpoint names must be unique ({duplicates})")
    return tuple(endpoints)


_cache: dict[tuple[Any, ...], Fleet] = {}
_cache_lock = threading.Lock()


def load_fleet(settings: Settings) -> Fleet:
    """The fleet ``settings`` declare (cached until the file changes)."""
    path = settings.runtimes_file
    mtime = path.stat().st_mtime_ns if path is not None and path.exists() else None
    key = (
        str(path),
        mtime,
        settings.runtimes,
        settings.runtime_url,
        settings.runtime_kind,
        settings.runtime_slots,
        settings.embedded_port,
    )
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    if path is not None:
        fleet = Fleet(_endpoints_from(_parse_file(path), str(path), settings), declared=True)
    elif settings.runtimes:
        try:
            raw = json.loads(settings.runtimes)
        except ValueError as exc:
            raise FleetConfigError(f"GENQ_RUNTIMES is not JSON: {exc}") from None
        fleet = Fleet(_endpoints_from(raw, "GENQ_RUNTIMES", settings), declared=True)
    else:
        fleet = Fleet((_legacy_endpoint(settings),), declared=False)
    with _cache_lock:
        _cache[key] = fleet
    return fleet


def fleet_dispatch(settings: Settings) -> bool:
    """Whether jobs go through the fleet's backlog (see docs/fleet.md): always for a declared
    fleet, and for the one-endpoint fleet unless ``GENQ_FLEET_DISPATCH=false``."""
    return settings.fleet_dispatch or load_fleet(settings).declared


def fleet_concurrency(settings: Settings) -> int:
    """A worker's default concurrency: every slot of the fleet (an adaptive endpoint counts
    its maximum) and a quarter more, so a released job never waits in the broker for a free
    process while the one that gave its slot back is still settling its job."""
    total = 0
    for endpoint in load_fleet(settings).endpoints:
        total += endpoint.slots if isinstance(endpoint.slots, int) else _adaptive_max(settings)
    if not load_fleet(settings).declared:
        return max(1, total)  # the one-endpoint fleet: GENQ_RUNTIME_SLOTS, as before
    return total + max(1, (total + 3) // 4)


def _adaptive_max(settings: Settings) -> int:
    return int(getattr(settings, "adaptive_max_slots", 8))
