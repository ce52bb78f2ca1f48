"""How a ``genq`` command fails: one line in the stable error shape on stderr, and an exit code
from one table.

=====  ===============================================================================
code   meaning
=====  ===============================================================================
0      done
1      not done: something was missing, in conflict, unavailable or broken (``not_found``,
       ``conflict``, ``broker_unavailable``, ``internal``, …); the error line says which
2      refused: the command line or the request was invalid (``invalid_request``,
       ``webhook_url_refused``, and Click's own usage errors)
=====  ===============================================================================

``genq up`` and ``genq runtime`` run processes in the foreground and end with their outcome
(``genq up``: 0 after a clean stop, 1 if a component gave up or the demonstration failed;
``genq runtime``: the runtime server's own code).
"""

from __future__ import annotations

import json
from typing import NoReturn

import typer

from schemas import ErrorCode, GenqError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_REFUSED", "exit_code", "fail"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2

# Error codes that mean "fix what you typed": every other code exits with EXIT_FAILED.
REFUSED_CODES = frozenset({ErrorCode.INVALID_REQUEST, ErrorCode.WEBHOOK_URL_REFUSED})


def exit_code(exc: GenqError) -> int:
    """The exit code for a command that failed with ``exc``."""
    return EXIT_REFUSED if exc.code in REFUSED_CODES else EXIT_FAILED


def fail(exc: GenqError) -> NoReturn:
    """Print ``exc`` in the stable error shape and exit; never a traceback for a user's mistake."""
    typer.echo(json.dumps(exc.to_body()), err=True)
    raise typer.Exit(exit_code(exc))
