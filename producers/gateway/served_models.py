"""Which models the stack serves: the configured default model, and whatever the runtime's
own model list names (asked through ``genq.runtime_health``, trusted for a few seconds); with
a declared runtime fleet, the models its endpoints serve (``producers.fleet_models``)."""

from __future__ import annotations

import logging
import threading
import time

from genq.runtime_health import RuntimeProbe
from schemas import PermanentError, TransientError

log = logging.getLogger(__name__)


class ServedModels:
    """The model names ``GET /v1/models`` lists and the OpenAI routes accept. Thread-safe."""

    def __init__(self, probe: RuntimeProbe, default_model: str, ttl_seconds: float) -> None:
        self.probe = probe
        self.default_model = default_model
        self.ttl_seconds = ttl_seconds
        # OpenAI's ``created`` for each listed model: when this gateway started serving it.
        self.since = int(time.time())
        self._lock = threading.Lock()
        self._listed: tuple[list[str] | None, float] = (None, -1.0)

    def runtime_models(self) -> list[str] | None:
        """The runtime's model list (None if it did not answer), cached ``ttl_seconds``."""
        with self._lock:
            listed, at = self._listed
        if at >= 0 and time.monotonic() - at < self.ttl_seconds:
            return listed
        try:
            names: list[str] | None = self.probe.models()
        except (TransientError, PermanentError) as exc:
            log.info("runtime model list unavailable: %s", exc.message)
            names = None
        with self._lock:
            self._listed = (names, time.monotonic())
        return names

    def names(self) -> list[str]:
        """The default model first, then the runtime's others."""
        return list(dict.fromkeys([self.default_model, *(self.runtime_models() or [])]))

    def serves(self, model: str) -> bool:
        """Whether a request for ``model`` can run. Without an answer from the runtime only
        the default model is known; other names are let through (the worker will find out)."""
        if model == self.default_model:
            return True
        listed = self.runtime_models()
        if listed is None:
            return True
        bare = model.removesuffix(":latest")
        return model in listed or bare in listed or f"{bare}:latest" in listed
