"""Shared fixtures: real servers on loopback, started once per session and cleaned per test.

Fixtures hand out URLs and paths, and tests pass them on explicitly
(``Settings(redis_url=...)``, or ``env=`` for a ``GenqProcess``). The one change to
``os.environ`` is made once, at configure time: the developer's ``GENQ_*`` variables are dropped
and ``HOME`` is a fresh directory, so neither ``Settings()`` nor a ``genq`` subprocess finds the
developer's running ``genq up`` (its file in the default data dir) or its Redis.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from genq import constants as c
from genq.settings import Settings
from tests.support import (
    EmbeddedRuntime,
    GenqProcess,
    PostgresCluster,
    PostgresNotFound,
    RedisServer,
)
from tests.support.rabbitmq import RabbitMQBroker, RabbitMQNotFound, RabbitMQServer, machine_broker

_MACHINE_HOME = pytest.StashKey[tuple[str | None, Path]]()
RUNTIME_GROUP = "runtime"


def pytest_configure(config: pytest.Config) -> None:
    for name in [k for k in os.environ if k.upper().startswith("GENQ_")]:
        del os.environ[name]
    home = Path(tempfile.mkdtemp(prefix="genq-tests-home-"))
    config.stash[_MACHINE_HOME] = (os.environ.get("HOME"), home)
    os.environ["HOME"] = str(home)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``pytest -n``: every test of the embedded model (marked ``runtime``) goes to one
    xdist worker (``--dist loadgroup``), which alone starts the ~250 MB llama.cpp server; and
    slow tests start first, so none of them is left to run alone at the end."""
    for item in items:
        if item.get_closest_marker("runtime"):
            item.add_marker(pytest.mark.xdist_group(RUNTIME_GROUP))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


def pytest_unconfigure(config: pytest.Config) -> None:
    machine_home, home = config.stash[_MACHINE_HOME]
    if machine_home is not None:
        os.environ["HOME"] = machine_home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole session. Tests normally want ``redis_url``."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis, emptied (FLUSHALL) before the test; restarted if a test killed it."""
    if not redis_server.running:
        redis_server.restart()
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def rabbitmq_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQBroker]:
    """The machine's RabbitMQ when it answers on 127.0.0.1:5672 (rabbitmqctl reaching it),
    else a private node started for the session; fails (never skips) if neither can be had.
    Tests normally want ``rabbitmq_url``."""
    broker = machine_broker()
    if broker is not None:
        yield broker
        return
    try:
        server = RabbitMQServer(tmp_path_factory.mktemp("rabbitmq"))
    except RabbitMQNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server.broker


@pytest.fixture
def rabbitmq_url(rabbitmq_broker: RabbitMQBroker) -> Iterator[str]:
    """An AMQP URL to a vhost of this test's own on the session's RabbitMQ (guest/guest),
    deleted after the test (with every queue and connection on it)."""
    vhost = rabbitmq_broker.add_vhost()
    yield rabbitmq_broker.url(vhost)
    rabbitmq_broker.delete_vhost(vhost)


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster for the session; fails (never skips) if it cannot start."""
    try:
        cluster = PostgresCluster(tmp_path_factory.mktemp("postgres"))
    except PostgresNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    with cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """SQLAlchemy URL of database ``genq`` in the session cluster (shared by all tests)."""
    return postgres_cluster.url


@pytest.fixture
def fresh_postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """SQLAlchemy URL of a brand-new, empty database, dropped after the test."""
    name = f"genq_test_{uuid.uuid4().hex[:12]}"
    url = postgres_cluster.create_database(name)
    yield url
    postgres_cluster.drop_database(name)


@pytest.fixture(scope="session")
def embedded_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRuntime]:
    """The real embedded llama.cpp server, started once per session by the first test asking.

    Its ``.url`` is an OpenAI-compatible base URL; ``.model`` is the model alias to request.
    """
    data_dir = tmp_path_factory.mktemp("embedded")
    settings = Settings(
        data_dir=data_dir,
        embedded_model_path=None,
        default_model=c.EMBEDDED_MODEL_ALIAS,
        embedded_context_tokens=c.EMBEDDED_CONTEXT_TOKENS,
    )
    with EmbeddedRuntime(settings, data_dir / "runtime.log") as runtime:
        yield runtime


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    """An empty directory to use as ``Settings.data_dir`` for this test."""
    data_dir = tmp_path / "genq-data"
    data_dir.mkdir()
    return data_dir


@pytest.fixture
def start_genq(tmp_path: Path) -> Iterator[Callable[..., GenqProcess]]:
    """Factory: ``start_genq(argv, env, name=...)`` starts ``python -m genq *argv``.

    Every process it started is killed (SIGKILL to its whole process group) when the test
    ends: the test is over, its shutdown is not checked there (tests of a shutdown send the
    signal themselves and wait for its outcome). A polite stop cost every test with a worker
    about 3 s of Celery's own shutdown (its pool's join loop, a 1 s pause in each exiting
    pool process), and nothing after the test could see the difference.
    """
    started: list[GenqProcess] = []

    def start(argv: list[str], env: Mapping[str, str], name: str | None = None) -> GenqProcess:
        log_name = name or f"genq-{len(started)}"
        process = GenqProcess(argv, dict(env), tmp_path / f"{log_name}.log")
        started.append(process)
        return process.start()

    yield start
    for process in reversed(started):
        process.kill()
