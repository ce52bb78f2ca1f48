"""A small process supervisor for ``genq up``: restart what crashes, stop everything in order.

Each component runs in its own process group (its pool children with it), its output written
line by line to ``<log dir>/<name>.log`` and, filtered (:mod:`genq.cli.stack.console`), to the
console. A component that exits unasked has its whole group killed (no orphaned pool
children) and is started again after the restart policy's delay, or given up on after
repeated crashes; the others keep running. A stop SIGTERMs every group but the last ones
(the runtime, which the workers finish their jobs on, then Redis, which they hand jobs back
through), waits for them up to the grace period, SIGKILLs what is left, then stops the last
ones one by one the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO

import httpx
import redis

from genq.cli.stack.console import console_line, prefixed
from genq.cli.stack.plan import Component
from genq.cli.stack.restart_policy import (
    RestartPolicy,
    crashes_within,
    describe_exit,
    restart_delay,
)

__all__ = ["Supervisor"]

POLL_SECONDS = 0.2
PROBE_TIMEOUT_SECONDS = 2.0
PUMP_JOIN_SECONDS = 2.0
# The runtime and Redis (stopped last) each get this long to write its AOF before SIGKILL.
LAST_STOP_SECONDS = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Echo = Callable[[str], None]


@dataclass
class _Child:
    """One component and its current process (None between a crash and its restart)."""

    component: Component
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None
    started_at: float = 0.0
    ready: threading.Event = field(default_factory=threading.Event)
    log_seen: threading.Event = field(default_factory=threading.Event)
    crash_times: list[float] = field(default_factory=list)
    restart_at: float | None = None
    gave_up: bool = False

    @property
    def name(self) -> str:
        return self.component.name


class Supervisor:
    """Runs ``components`` until :meth:`request_stop` or SIGINT/SIGTERM (see the module doc)."""

    def __init__(
        self,
        components: Sequence[Component],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        echo: Echo,
        grace_seconds: float,
        stop_last: Sequence[str] = ("runtime", "redis"),
        policy: RestartPolicy | None = None,
        verbose: bool = False,
    ) -> None:
        self._children = [_Child(c, log_dir / f"{c.name}.log") for c in components]
        self._env = dict(env)
        self._echo = echo
        self._grace_seconds = grace_seconds
        self._stop_last = tuple(stop_last)
        self._policy = policy or RestartPolicy()
        self._verbose = verbose
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self.log_dir = log_dir

    # --- what the rest of `genq up` asks -------------------------------------------------

    def request_stop(self) -> None:
        """Stop everything (from any thread); a second request skips the grace period."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def is_ready(self, name: str) -> bool:
        return self._child(name).ready.is_set()

    def gave_up_on(self, name: str) -> bool:
        return self._child(name).gave_up

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Start every component and supervise them until a stop; call from the main thread."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # SIGHUP too: a closed terminal stops the stack in order instead of orphaning it.
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for child in self._children:
                self._start(child)
            while not self._stopping.is_set():
                self._tend(time.monotonic())
                self._stopping.wait(POLL_SECONDS)
            self._stop_all()
        finally:
            for child in self._children:  # only after an error: a stop reaped them all
                if child.process is not None:
                    self._kill_group(child)
                    child.process.wait()
                    child.process = None
            for child in self._children:
                if child.pump is not None:
                    child.pump.join(PUMP_JOIN_SECONDS)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.request_stop()

    def _tend(self, now: float) -> None:
        for child in self._children:
            if child.process is not None and _has_exited(child.process):
                self._on_exit(child, now)
            elif child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                self._start(child)
                self._echo(f"genq up: {child.name} restarted (pid {self._pid(child)})")

    def _start(self, child: _Child) -> None:
        child.ready, child.log_seen = threading.Event(), threading.Event()
        log_file = child.log_path.open("ab")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        process = subprocess.Popen(
            child.component.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env,
            start_new_session=True,  # its own process group: signalled and killed as one
        )
        log_file.write(f"--- genq up: started {child.name}, pid {process.pid}, {stamp}\n".encode())
        log_file.flush()
        child.process, child.started_at = process, time.monotonic()
        assert process.stdout is not None
        child.pump = threading.Thread(
            target=self._pump,
            args=(child, process.stdout, log_file, child.log_seen),
            name=f"genq-up-{child.name}-output",
            daemon=True,
        )
        child.pump.start()
        threading.Thread(
            target=self._watch_ready,
            args=(child, process, child.ready, child.log_seen),
            name=f"genq-up-{child.name}-ready",
            daemon=True,
        ).start()

    def _on_exit(self, child: _Child, now: float) -> None:
        process = child.process
        assert process is not None
        self._kill_group(child)  # before reaping: the group id cannot be reused meanwhile
        process.wait()
        child.process = None
        if child.pump is not None:
            child.pump.join(PUMP_JOIN_SECONDS)
        child.crash_times.append(now)
        delay = restart_delay(self._policy, child.crash_times)
        how = describe_exit(process.returncode)
        if delay is None:
            child.gave_up = True
            crashes = crashes_within(child.crash_times, now, self._policy.window_seconds)
            self._echo(
                f"genq up: giving up on {child.name}: it crashed {crashes} times within "
                f"{self._policy.window_seconds:g} s (last: {how}); the rest keeps running; "
                f"its log: {child.log_path}"
            )
            return
        child.restart_at = now + delay
        self._echo(f"genq up: {child.name} (pid {process.pid}) {how}; restarting it in {delay:g} s")

    # --- output and readiness ------------------------------------------------------------

    def _pump(
        self, child: _Child, stream: IO[bytes], log_file: IO[bytes], log_seen: threading.Event
    ) -> None:
        """Copy one process's output to its log file; show what the console should show."""
        needle = child.component.probe.target if child.component.probe.kind == "log" else None
        with stream, log_file:
            for raw in iter(stream.readline, b""):
                # Keep draining whatever fails (a full disk, a closed console): a pipe left
                # full would block the component on its next write.
                with contextlib.suppress(OSError, ValueError):
                    log_file.write(raw)
                    log_file.flush()
                text = raw.decode("utf-8", "replace")
                if needle is not None and needle in text:
                    log_seen.set()
                shown = prefixed(child.name, text.rstrip()) if self._verbose else None
                shown = shown or console_line(child.name, text)
                if shown is not None:
                    with contextlib.suppress(OSError, ValueError):
                        self._echo(shown)

    def _watch_ready(
        self,
        child: _Child,
        process: subprocess.Popen[bytes],
        ready: threading.Event,
        log_seen: threading.Event,
    ) -> None:
        """Say when this start of ``child`` is ready (or that it is late, once)."""
        probe = child.component.probe
        deadline = time.monotonic() + probe.timeout_seconds
        late = False
        while process.returncode is None and not self._stopping.is_set():
            if log_seen.is_set() if probe.kind == "log" else _probe_once(probe.kind, probe.target):
                ready.set()
                seconds = time.monotonic() - child.started_at
                self._echo(f"genq up: {child.name} ready (pid {process.pid}, {seconds:.1f} s)")
                return
            if not late and time.monotonic() > deadline:
                late = True
                self._echo(
                    f"genq up: {child.name} is not ready after {probe.timeout_seconds:g} s; "
                    f"its log: {child.log_path}"
                )
            self._stopping.wait(POLL_SECONDS)

    # --- stopping ------------------------------------------------------------------------

    def _stop_all(self) -> None:
        first = [c for c in self._children if c.name not in self._stop_last]
        last = [c for c in self._children if c.name in self._stop_last]
        self._echo(
            f"genq up: stopping (workers finish or hand back their jobs within "
            f"{self._grace_seconds:g} s)"
        )
        self._terminate(first, self._grace_seconds + LAST_STOP_SECONDS)
        # In order: the runtime outlives the workers finishing their jobs on it, and Redis
        # outlives everyone handing jobs back through it.
        for name in self._stop_last:
            self._terminate([c for c in last if c.name == name], LAST_STOP_SECONDS)

    def _terminate(self, children: list[_Child], timeout_seconds: float) -> None:
        running = [c for c in children if c.process is not None and not _has_exited(c.process)]
        for child in running:
            self._signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline and not self._hurry.is_set():
            if all(_has_exited(c.process) for c in running if c.process is not None):
                break
            time.sleep(POLL_SECONDS)
        for child in running:
            process = child.process
            assert process is not None
            if not _has_exited(process):
                self._echo(f"genq up: {child.name} did not stop in time; killing it")
            self._kill_group(child)  # and whatever its group still holds
            process.wait()
            child.process = None

    def _kill_group(self, child: _Child) -> None:
        """SIGKILL whatever is left of ``child``'s process group (pool children, a server)."""
        self._signal_group(child, signal.SIGKILL)

    @staticmethod
    def _signal_group(child: _Child, signum: int) -> None:
        if child.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signum)

    # --- small helpers -------------------------------------------------------------------

    def _child(self, name: str) -> _Child:
        for child in self._children:
            if child.name == name:
                return child
        raise KeyError(name)

    @staticmethod
    def _pid(child: _Child) -> int | None:
        return child.process.pid if child.process is not None else None


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether ``process`` has exited, without reaping it (its pid, and so its process group
    id, stays reserved until :meth:`Popen.wait`)."""
    if process.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return process.poll() is not None
    return info is not None


def _probe_once(kind: str, target: str) -> bool:
    try:
        if kind == "redis":
            with redis.Redis.from_url(target, socket_timeout=PROBE_TIMEOUT_SECONDS) as client:
                return bool(client.ping())
        response = httpx.get(target, timeout=PROBE_TIMEOUT_SECONDS)
        return response.status_code == httpx.codes.OK
    except (redis.RedisError, httpx.HTTPError, OSError):
        return False
