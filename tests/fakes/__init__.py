"""Fakes for backends the tests cannot make misbehave on demand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.runtime_server import FakeRuntime, Fault, FaultSpec

__all__ = ["FakeRuntime", "Fault", "FaultSpec"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m tests.fakes.runtime_server` runs without runpy's
    # "found in sys.modules" warning.
    if name in __all__:
        from tests.fakes import runtime_server

        return getattr(runtime_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
