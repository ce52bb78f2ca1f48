"""A throwaway PostgreSQL cluster on 127.0.0.1, owned by an unprivileged user when run as root.

PostgreSQL refuses to run as root, and pytest's temp dirs are private to root, so as root the
cluster lives in its own ``/tmp/genq-pg-*`` directory owned by ``nobody``; its server log is
copied into ``tmpdir`` when the cluster is closed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql

from tests.support.ports import free_port

__all__ = ["PostgresCluster", "PostgresNotFound", "postgres_bin_dir"]

SUPERUSER = "genq"
DATABASE = "genq"
UNPRIVILEGED_USER = "nobody"
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PostgresNotFound(RuntimeError):
    """``initdb``/``pg_ctl`` are not installed."""


def postgres_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: PATH first, then Debian's layout."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    debian = sorted(
        Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/")),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    for candidate in reversed(debian):
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise PostgresNotFound(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
        f"{DEBIAN_BIN_GLOB}; install them with `make install` (apt package `postgresql`)"
    )


class PostgresCluster:
    """``initdb`` + ``pg_ctl start`` on a free port, with database ``genq`` and trust auth."""

    def __init__(self, tmpdir: Path, *, ready_timeout: int = 60) -> None:
        self.tmpdir = tmpdir
        self.port = free_port()
        self.ready_timeout = ready_timeout
        self.bin_dir = postgres_bin_dir()
        self._owner = pwd.getpwnam(UNPRIVILEGED_USER) if os.geteuid() == 0 else None
        self._home: Path | None = None

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` in this cluster."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        return self._require_home() / "postgres.log"

    @property
    def running(self) -> bool:
        pid = self._postmaster_pid()
        return pid is not None and _alive(pid)

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (its backends are its children), or None when stopped."""
        return self._postmaster_pid() if self.running else None

    def start(self) -> Self:
        """Create the cluster on first start, then start it and wait until it accepts queries."""
        created = self._home is None
        if created:
            self._home = self._make_home()
            self._run(
                "initdb",
                "-D",
                "data",
                "--auth=trust",
                f"--username={SUPERUSER}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self._require_home()} -c fsync=off"
        )
        self._run(
            "pg_ctl",
            "start",
            "-D",
            "data",
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(self.ready_timeout),
            "-o",
            options,
        )
        if created:
            self.create_database(DATABASE)
        return self

    def stop(self, timeout: int = 30) -> None:
        """``pg_ctl stop -m fast``; the data stays for ``restart()``."""
        if self.running:
            self._run("pg_ctl", "stop", "-D", "data", "-m", "fast", "-w", "-t", str(timeout))

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once, like a crash of the machine."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        # Backends are their own session leaders, so the postmaster's group does not reach them.
        victims = [pid, *_children_of(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        # Wait until init has reaped them too: a zombie postmaster still "holds" postmaster.pid.
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{victim}").exists() for victim in victims):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL processes {victims} did not go away after SIGKILL")
            time.sleep(0.05)

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the cluster, keep its log in ``tmpdir`` and delete a private home dir."""
        if self._home is None:
            return
        self.stop()
        if self._owner is not None:
            if self.log_path.exists():
                shutil.copy(self.log_path, self.tmpdir / "postgres.log")
            shutil.rmtree(self._home, ignore_errors=True)
        self._home = None

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        with self._admin_connection() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        with self._admin_connection() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _admin_connection(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        )

    def _make_home(self) -> Path:
        if self._owner is None:
            home = self.tmpdir / "pg"
            home.mkdir(parents=True, exist_ok=True)
            return home
        home = Path(tempfile.mkdtemp(prefix="genq-pg-"))
        os.chown(home, self._owner.pw_uid, self._owner.pw_gid)
        return home

    def _require_home(self) -> Path:
        if self._home is None:
            raise RuntimeError("the PostgreSQL cluster was never started")
        return self._home

    def _postmaster_pid(self) -> int | None:
        if self._home is None:
            return None
        try:
            first_line = (self._home / "data" / "postmaster.pid").read_text().split("\n", 1)[0]
        except (FileNotFoundError, PermissionError):
            return None
        return int(first_line) if first_line.strip().isdigit() else None

    def _run(self, program: str, *args: str) -> None:
        home = self._require_home()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        as_owner: dict[str, Any] = {}
        if self._owner is not None:
            env["HOME"] = str(home)
            as_owner = {"user": self._owner.pw_uid, "group": self._owner.pw_gid, "extra_groups": []}
        # Output to a file, not a pipe: the daemonized postmaster must not hold our pipe open.
        output_path = self.tmpdir / "pg_commands.log"
        with output_path.open("ab") as output:
            result = subprocess.run(
                [str(self.bin_dir / program), *args],
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                check=False,
                **as_owner,
            )
        if result.returncode != 0:
            server_log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                f"{output_path.read_text(errors='replace')[-4000:]}\n{server_log[-4000:]}"
            )


def _children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
