"""The running stack's file: what ``genq up`` chose (URLs, ports, model), for other shells.

``genq up`` writes ``<data dir>/run/stack.json`` once its plan is decided and removes it when
it stops. ``Settings()`` reads it below the environment and above the defaults
(:class:`StackFileSource`), so ``genq submit``, ``genq stats`` and ``GenqClient(Settings())``
in another shell reach the stack's Redis and get the model it serves. A file whose process is
gone (a crash, a reboot) is ignored. The file may hold the local admin key: mode 0600.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

__all__ = [
    "ENV_PREFIX",
    "RunningStack",
    "StackFileSource",
    "read_running_stack",
    "remove_stack_file",
    "running_stack_env",
    "stack_file_path",
    "write_stack_file",
]

log = logging.getLogger(__name__)

ENV_PREFIX = "GENQ_"
STACK_FILE = Path("run") / "stack.json"
FORMAT_VERSION = 1
# Never taken from the file: it is how the file was found.
NOT_FROM_FILE = frozenset({"data_dir"})


@dataclass(frozen=True)
class RunningStack:
    """A live ``genq up``: its supervisor's pid and the ``GENQ_*`` env its components run with."""

    pid: int
    env: dict[str, str]
    path: Path


def stack_file_path(data_dir: Path) -> Path:
    return data_dir / STACK_FILE


def write_stack_file(data_dir: Path, env: Mapping[str, str], pid: int) -> Path:
    """Record the stack supervised by ``pid`` and the ``GENQ_*`` part of ``env`` (atomically:
    a reader sees the old file or the whole new one, never a part)."""
    path = stack_file_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "version": FORMAT_VERSION,
        "pid": pid,
        "pid_started": _process_start_ticks(pid),
        "written_at": datetime.now(UTC).isoformat(),
        "env": {k: str(v) for k, v in sorted(env.items()) if k.startswith(ENV_PREFIX)},
    }
    fd, partial = tempfile.mkstemp(prefix=".stack.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600
            json.dump(body, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return path


def remove_stack_file(data_dir: Path, pid: int | None = None) -> None:
    """Remove the stack file; with ``pid``, only if that process wrote it (a refused second
    ``genq up`` must not remove the file of the one that runs)."""
    path = stack_file_path(data_dir)
    if pid is not None:
        body = _load(path)
        if body is None or body.get("pid") != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read_running_stack(data_dir: Path) -> RunningStack | None:
    """The stack recorded in ``data_dir`` if its supervisor still runs, else None (no file, an
    unreadable one, or one left by a stack that is gone)."""
    path = stack_file_path(data_dir)
    body = _load(path)
    if body is None:
        return None
    pid, env, started = body.get("pid"), body.get("env"), body.get("pid_started")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(env, dict):
        log.debug("ignoring %s: not a stack file", path)
        return None
    if not _alive(pid, started if isinstance(started, int) else None):
        log.debug("ignoring %s: its stack (pid %d) no longer runs", path, pid)
        return None
    return RunningStack(pid, {str(k): str(v) for k, v in env.items()}, path)


def running_stack_env(data_dir: Path) -> dict[str, str]:
    """The ``GENQ_*`` env of the stack running in ``data_dir``; empty when none runs."""
    stack = read_running_stack(data_dir)
    return dict(stack.env) if stack else {}


def _load(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.debug("ignoring %s: %s", path, exc)
        return None
    return body if isinstance(body, dict) else None


def _alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: the signal's answer is all there is
    # After a reboot the pid may belong to an unrelated process: compare start times.
    return stat[0] != "Z" and (started is None or int(stat[19]) == started)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 and fields[19].isdigit() else None


def _process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot; None where unknown."""
    stat = _proc_stat(pid)
    return None if stat is None else int(stat[19])


class StackFileSource(PydanticBaseSettingsSource):
    """pydantic-settings source: the running stack's ``GENQ_*`` values, below the sources in
    ``above`` (init kwargs, environment), whose ``data_dir`` (else the default) says where
    to look."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        above: Sequence[PydanticBaseSettingsSource],
        default_data_dir: Callable[[], Path],
    ) -> None:
        super().__init__(settings_cls)
        self.above = above
        self.default_data_dir = default_data_dir

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        env = running_stack_env(self._data_dir())
        fields = self.settings_cls.model_fields
        values: dict[str, Any] = {}
        for key, value in env.items():
            name = key[len(ENV_PREFIX) :].lower()
            if name in fields and name not in NOT_FROM_FILE:
                values[name] = value
        return values

    def _data_dir(self) -> Path:
        for source in self.above:
            value = source().get("data_dir")
            if value:
                return Path(value)
        return self.default_data_dir()
