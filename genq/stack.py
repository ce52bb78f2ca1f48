"""``genq up``: the whole stack on loopback, from a Procfile run by honcho, until Ctrl-C.

honcho starts every process in its own process group, relays their output with a prefix and,
on Ctrl-C / SIGTERM (or when one process dies), SIGTERMs every group, then SIGKILLs what is
left after the grace period. A helper thread waits until each component is ready, prints the
URLs, runs the demonstration and, with ``--exit``, stops the stack.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import honcho.manager as honcho_manager
import httpx
import redis
from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

from genq.demo import DEMO_ENV
from genq.migrate import upgrade_database
from genq.settings import Settings
from genq.stack_plan import Component, StackPlan, plan_stack
from schemas.errors import PermanentError

__all__ = ["Demo", "StackOutcome", "run_stack"]

POLL_SECONDS = 0.2
START_WAIT_SECONDS = 10.0
# Beyond the workers' own soft-shutdown grace, before honcho SIGKILLs what is left.
KILL_MARGIN_SECONDS = 10.0
STOP_LAST = frozenset({"redis"})

Demo = Callable[[Settings, Callable[[str], None]], bool]


class NotReady(Exception):
    """A component did not become ready in time, or the stack is stopping."""


class ReadinessPrinter(Printer):  # type: ignore[misc]
    """honcho's printer, also noting when a process logs the line that means it is ready."""

    def __init__(self, output: TextIO, watch: dict[str, str]) -> None:
        super().__init__(output)
        self.watch = watch
        self.ready = {name: threading.Event() for name in watch}

    def write(self, message: Any) -> None:
        super().write(message)
        needle = self.watch.get(message.name)
        if needle is None or self.ready[message.name].is_set():
            return
        data = message.data
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if needle in text:
            self.ready[message.name].set()


class StackManager(Manager):  # type: ignore[misc]
    """honcho's manager, telling a requested stop (Ctrl-C, --exit) from a process dying."""

    def __init__(self, printer: Printer) -> None:
        super().__init__(printer)
        self.stopping = threading.Event()
        self.stop_requested = False

    def terminate(self) -> None:
        if not self._any_stopped():  # nothing died: a signal or request_stop() asked
            self.stop_requested = True
        self.stopping.set()
        super().terminate()

    def _killall(self, force: bool = False) -> None:
        if force:
            super()._killall(force=True)
            return
        # Redis goes last: workers hand their jobs back and ack through it while they stop.
        for name, process in self._processes.items():
            if "returncode" not in process and name not in STOP_LAST:
                self._system_print(f"sending SIGTERM to {name} (pid {process['pid']})\n")
                self._procmgr.terminate(process["pid"])
        threading.Thread(target=self._stop_last, name="genq-up-stop-last", daemon=True).start()

    def _stop_last(self) -> None:
        def others_running() -> bool:
            return any(
                "returncode" not in p for n, p in self._processes.items() if n not in STOP_LAST
            )

        while others_running():
            time.sleep(POLL_SECONDS)
        for name in STOP_LAST & self._processes.keys():
            process = self._processes[name]
            if "returncode" not in process:
                self._system_print(f"sending SIGTERM to {name} (pid {process['pid']})\n")
                self._procmgr.terminate(process["pid"])

    def request_stop(self) -> None:
        deadline = time.monotonic() + START_WAIT_SECONDS
        while not self._all_started() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)  # honcho signals by pid: wait until every one has one
        self.terminate()

    def group_ids(self) -> list[int]:
        return [int(p["pid"]) for p in self._processes.values() if p.get("pid")]


@dataclass
class StackOutcome:
    ready: bool = False
    demo_ok: bool | None = None
    failure: str | None = None


def _wait(component: Component, printer: ReadinessPrinter, stopping: threading.Event) -> None:
    probe = component.probe
    deadline = time.monotonic() + probe.timeout_seconds
    while not stopping.is_set():
        if _probe_once(component, printer):
            return
        if time.monotonic() > deadline:
            raise NotReady(f"{component.name} not ready within {probe.timeout_seconds:g} s")
        time.sleep(POLL_SECONDS)
    raise NotReady("the stack is stopping")


def _probe_once(component: Component, printer: ReadinessPrinter) -> bool:
    probe = component.probe
    if probe.kind == "log":
        return printer.ready[component.name].is_set()
    try:
        if probe.kind == "redis":
            with redis.Redis.from_url(probe.target, socket_timeout=1.0) as client:
                return bool(client.ping())
        return httpx.get(probe.target, timeout=2.0).status_code == httpx.codes.OK
    except (redis.RedisError, httpx.HTTPError, OSError):
        return False


def _describe(plan: StackPlan, echo: Callable[[str], None]) -> None:
    echo("genq is up:")
    for component in plan.components:
        if component.url:
            echo(f"  {component.name:<8} {component.url}")
    for key in ("GENQ_ADMIN_KEY", "GENQ_FLOWER_BASIC_AUTH"):
        value = plan.env.get(key) or os.environ.get(key)
        if value:
            echo(f"  {key}={value}")
    echo(f"  data     {plan.settings.data_dir}")


def _supervise(
    plan: StackPlan,
    manager: StackManager,
    printer: ReadinessPrinter,
    demo: Demo | None,
    exit_after: bool,
    outcome: StackOutcome,
    echo: Callable[[str], None],
) -> None:
    try:
        for component in plan.components:
            _wait(component, printer, manager.stopping)
        outcome.ready = True
        _describe(plan, echo)
        if demo is not None:
            outcome.demo_ok = demo(_as_components_see_it(plan), echo)
        if exit_after:
            manager.request_stop()
    except NotReady as exc:
        if not manager.stopping.is_set():
            outcome.failure = str(exc)
            echo(f"genq up: {exc}; stopping")
            manager.request_stop()
    except Exception as exc:  # a failed demo must still stop the stack it started
        outcome.failure = f"{type(exc).__name__}: {exc}"
        echo(f"genq up: {outcome.failure}; stopping")
        manager.request_stop()


def _as_components_see_it(plan: StackPlan) -> Settings:
    """The settings every component runs with: the environment plus the plan's overrides
    (ports, generated admin key, demo timings)."""
    overrides = {key[5:].lower(): value for key, value in plan.env.items()}
    return Settings(**overrides)  # type: ignore[arg-type]


def _kill_leftovers(group_ids: list[int]) -> None:
    """Whatever a process left in its group (pool children) goes with it."""
    for pgid in group_ids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def run_stack(
    settings: Settings,
    commands: set[str],
    *,
    demo: Demo | None = None,
    exit_after: bool = False,
    output: TextIO,
) -> int:
    """Run the stack until Ctrl-C (or, with ``exit_after``, until ready and demonstrated)."""

    def echo(text: str) -> None:
        print(text, file=output, flush=True)

    plan = plan_stack(settings, commands)
    if demo is not None:
        plan.env.update(DEMO_ENV)
    for component in plan.components:
        if shutil.which(component.argv[0]) is None:
            raise PermanentError(
                f"{component.argv[0]} is not installed: run `make install` (it installs what "
                "`genq up` needs), or point genq at a running one (GENQ_REDIS_URL)"
            )
    for name in plan.skipped:
        echo(f"genq up: skipping {name}: its `genq` command does not exist yet")
    for note in plan.notes:
        echo(f"genq up: {note}")
    upgrade_database(plan.settings.store_url)
    procfile_path = settings.data_dir / "run" / "Procfile"
    procfile_path.parent.mkdir(parents=True, exist_ok=True)
    procfile_path.write_text(plan.procfile())
    echo(f"genq up: starting {procfile_path}")

    honcho_manager.KILL_WAIT = settings.shutdown_grace_seconds + KILL_MARGIN_SECONDS
    watch = {c.name: c.probe.target for c in plan.components if c.probe.kind == "log"}
    printer = ReadinessPrinter(output, watch)
    manager = StackManager(printer)
    env = {**os.environ, **plan.env, "PYTHONUNBUFFERED": "1"}
    for name, command in parse_procfile(procfile_path.read_text()).processes.items():
        manager.add_process(name, command, env=env, cwd=os.getcwd())
    outcome = StackOutcome()
    helper = threading.Thread(
        target=_supervise,
        args=(plan, manager, printer, demo, exit_after, outcome, echo),
        name="genq-up",
        daemon=True,
    )
    helper.start()
    try:
        manager.loop()
    finally:
        _kill_leftovers(manager.group_ids())
    helper.join(timeout=5)
    ok = manager.stop_requested and outcome.failure is None
    if exit_after:
        ok = ok and outcome.ready and outcome.demo_ok is not False
    echo("genq up: stopped" if ok else "genq up: stopped with errors")
    return 0 if ok else 1
