"""The models a declared runtime fleet serves (its endpoints' declared or discovered lists),
and the error a job for any other model gets at submit: the gateway's and ``GenqClient``'s
check, so a job no endpoint can run is refused with ``model_not_found`` instead of accepted."""

from __future__ import annotations

import threading
import time

from genq.fleet.config import model_matches
from genq.fleet.status import FleetStatus
from schemas import ErrorCode, GenqError

__all__ = ["FleetModels", "UnknownModel"]


class FleetModels:
    """``ServedModels`` for a declared runtime fleet: the models its endpoints list (declared,
    or discovered from each runtime), trusted for ``ttl_seconds``. Only those are served."""

    def __init__(self, status: FleetStatus, default_model: str, ttl_seconds: float) -> None:
        self.status = status
        self.default_model = default_model
        self.ttl_seconds = ttl_seconds
        self.since = int(time.time())
        self._lock = threading.Lock()
        self._listed: tuple[list[str], float] = ([], -1.0)

    def names(self) -> list[str]:
        with self._lock:
            listed, at = self._listed
        if at >= 0 and time.monotonic() - at < self.ttl_seconds:
            return listed
        listed = self.status.model_names()
        with self._lock:
            self._listed = (listed, time.monotonic())
        return listed

    def serves(self, model: str) -> bool:
        return model_matches(model, self.names())

    def check(self, model: str) -> None:
        """Raise ``UnknownModel`` (404 ``model_not_found``, listing the models) unless served."""
        if not self.serves(model):
            raise UnknownModel(model, self.names())


class UnknownModel(GenqError):
    """A job for a model no endpoint of the fleet serves."""

    code = ErrorCode.MODEL_NOT_FOUND

    def __init__(self, model: str, models: list[str]) -> None:
        super().__init__(
            f"no runtime endpoint serves model {model!r}; the models there are: "
            f"{', '.join(models) or '(none answered yet)'}",
            details=[{"field": "model", "code": "model_not_found", "models": models}],
        )
