"""How a ``genq`` command fails: one line in the stable error shape on stderr, and an exit code
from one table, documented in docs/operations.md ("Exit codes"; a test keeps the two equal)."""

from __future__ import annotations

import json
from typing import NoReturn

import typer

from schemas import ErrorCode, GenqError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_REFUSED", "exit_code", "fail"]

EXIT_OK = 0  # done
EXIT_FAILED = 1  # not done: missing, in conflict, unavailable or broken (the error says which)
EXIT_REFUSED = 2  # the command line or the request was invalid (Click's usage errors too)

# Error codes that mean "fix what you typed": every other code exits with EXIT_FAILED.
REFUSED_CODES = frozenset({ErrorCode.INVALID_REQUEST, ErrorCode.WEBHOOK_URL_REFUSED})


def exit_code(exc: GenqError) -> int:
    """The exit code for a command that failed with ``exc``."""
    return EXIT_REFUSED if exc.code in REFUSED_CODES else EXIT_FAILED


def fail(exc: GenqError) -> NoReturn:
    """Print ``exc`` in the stable error shape and exit; never a traceback for a user's mistake."""
    typer.echo(json.dumps(exc.to_body()), err=True)
    raise typer.Exit(exit_code(exc))
