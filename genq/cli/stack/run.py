"""``genq up``: the whole stack on loopback, supervised, until Ctrl-C.

The plan (:mod:`~genq.cli.stack.plan`) says what runs; the
:class:`~genq.cli.stack.supervisor.Supervisor` runs it, restarting a component that crashes
and stopping everything in order on Ctrl-C / SIGTERM. A helper thread waits until each
component is ready, prints the URLs and the next commands to type, runs the demonstration
and, with ``--exit``, stops the stack. While it runs, ``<data dir>/run/stack.json`` tells
`genq` commands in other shells where it is.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from genq.cli.demo import DEMO_ENV
from genq.cli.stack.plan import Component, StackPlan, plan_stack
from genq.cli.stack.supervisor import Supervisor
from genq.settings import Settings, unknown_env_names
from genq.stack_file import remove_stack_file, write_stack_file
from genq.store.migrate import upgrade_database
from schemas.errors import PermanentError

__all__ = ["Demo", "StackOutcome", "next_commands", "run_stack"]

POLL_SECONDS = 0.2
LOGS_DIR = "logs"

Demo = Callable[[Settings, Callable[[str], None]], bool]


class NotReady(Exception):
    """A component did not become ready in time, or the stack is stopping."""


@dataclass
class StackOutcome:
    ready: bool = False
    demo_ok: bool | None = None
    failure: str | None = None


class _Console:
    """Whole lines to ``output`` from any thread, never interleaved."""

    def __init__(self, output: TextIO) -> None:
        self.output = output
        self.lock = threading.Lock()

    def echo(self, text: str) -> None:
        # A console that went away (a closed pipe) must not stop the stack or its supervision.
        with self.lock, contextlib.suppress(OSError, ValueError):
            print(text, file=self.output, flush=True)


def next_commands() -> list[str]:
    """What a new user types next, in another shell; `genq` finds this stack by its file."""
    lines = [
        ("genq keys create --tenant me", "an API key for the HTTP gateway"),
        ('JOB=$(genq submit "Name three colours" --max-tokens 40)', "queue a job, keep its id"),
        ("genq watch $JOB", "its tokens as they are generated"),
    ]
    width = max(len(command) for command, _ in lines)
    return [f"{command:<{width}}  # {note}" for command, note in lines]


def _describe(plan: StackPlan, supervisor: Supervisor, echo: Callable[[str], None]) -> None:
    echo("genq is up:")
    for component in plan.components:
        if component.url:
            echo(f"  {component.name:<8} {component.url}")
    for key in ("GENQ_ADMIN_KEY", "GENQ_FLOWER_BASIC_AUTH"):
        value = plan.env.get(key) or os.environ.get(key)
        if value:
            echo(f"  {key}={value}")
    echo(f"  data     {plan.settings.data_dir}")
    echo(f"  logs     {supervisor.log_dir}/<name>.log")
    echo("next, in another shell:")
    if "data_dir" in plan.settings.model_fields_set:
        echo(f"  export GENQ_DATA_DIR={shlex.quote(str(plan.settings.data_dir))}")
    for line in next_commands():
        echo(f"  {line}")
    echo("Ctrl-C stops everything.")


def _wait(component: Component, supervisor: Supervisor) -> None:
    deadline = time.monotonic() + component.probe.timeout_seconds
    while not supervisor.stopping:
        if supervisor.is_ready(component.name):
            return
        if supervisor.gave_up_on(component.name):
            raise NotReady(f"{component.name} keeps crashing before it is ready")
        if time.monotonic() > deadline:
            raise NotReady(
                f"{component.name} not ready within {component.probe.timeout_seconds:g} s"
            )
        time.sleep(POLL_SECONDS)
    raise NotReady("the stack is stopping")


def _bring_up(
    plan: StackPlan,
    supervisor: Supervisor,
    demo: Demo | None,
    exit_after: bool,
    outcome: StackOutcome,
    echo: Callable[[str], None],
) -> None:
    try:
        for component in plan.components:
            _wait(component, supervisor)
        outcome.ready = True
        _describe(plan, supervisor, echo)
        if demo is not None:
            outcome.demo_ok = demo(_as_components_see_it(plan), echo)
        if exit_after:
            supervisor.request_stop()
    except NotReady as exc:
        if not supervisor.stopping:
            outcome.failure = str(exc)
            echo(f"genq up: {exc}; stopping")
            supervisor.request_stop()
    except Exception as exc:  # a failed demo must still stop the stack it started
        outcome.failure = f"{type(exc).__name__}: {exc}"
        echo(f"genq up: {outcome.failure}; stopping")
        supervisor.request_stop()


def _as_components_see_it(plan: StackPlan) -> Settings:
    """The settings every component runs with: the environment plus the plan's overrides
    (ports, generated admin key, demo timings)."""
    overrides = {key[5:].lower(): value for key, value in plan.env.items()}
    return Settings(**overrides)  # type: ignore[arg-type]


def _check_installed(plan: StackPlan) -> None:
    for component in plan.components:
        if shutil.which(component.argv[0]) is None:
            raise PermanentError(
                f"{component.argv[0]} is not installed: run `make install` (it installs what "
                "`genq up` needs), or point genq at a running one (GENQ_REDIS_URL)"
            )


def run_stack(
    settings: Settings,
    commands: set[str],
    *,
    demo: Demo | None = None,
    exit_after: bool = False,
    verbose: bool = False,
    output: TextIO,
) -> int:
    """Run the stack until Ctrl-C (or, with ``exit_after``, until ready and demonstrated)."""
    echo = _Console(output).echo
    plan = plan_stack(settings, commands)
    if demo is not None:
        plan.env.update(DEMO_ENV)
    _check_installed(plan)
    for name in plan.skipped:
        echo(f"genq up: skipping {name}: its `genq` command does not exist yet")
    for note in plan.notes:
        echo(f"genq up: {note}")
    upgrade_database(plan.settings.store_url)
    # genq up has reported unknown GENQ_* variables once; its components need not repeat it.
    unknown = set(unknown_env_names(os.environ))
    inherited = {k: v for k, v in os.environ.items() if k not in unknown}
    env = {**inherited, **plan.env, "PYTHONUNBUFFERED": "1"}
    data_dir = plan.settings.data_dir
    supervisor = Supervisor(
        plan.components,
        env=env,
        log_dir=data_dir / LOGS_DIR,
        echo=echo,
        grace_seconds=settings.shutdown_grace_seconds,
        verbose=verbose,
    )
    names = ", ".join(c.name for c in plan.components)
    echo(f"genq up: starting {names}; their output goes to {supervisor.log_dir}")
    outcome = StackOutcome()
    helper = threading.Thread(
        target=_bring_up,
        args=(plan, supervisor, demo, exit_after, outcome, echo),
        name="genq-up",
        daemon=True,
    )
    write_stack_file(data_dir, env, os.getpid())
    try:
        helper.start()
        supervisor.run()
    finally:
        remove_stack_file(data_dir, os.getpid())
    helper.join(timeout=5)
    gave_up = [c.name for c in plan.components if supervisor.gave_up_on(c.name)]
    ok = outcome.failure is None and not gave_up
    if exit_after:
        ok = ok and outcome.ready and outcome.demo_ok is not False
    echo("genq up: stopped" if ok else "genq up: stopped with errors")
    return 0 if ok else 1
