"""Helpers that start real servers and genq processes for the integration tests."""

from tests.support.ports import free_port, port_is_open
from tests.support.postgres import PostgresCluster, PostgresNotFound, postgres_bin_dir
from tests.support.processes import EmbeddedRuntime, GenqProcess, ManagedProcess, RedisServer
from tests.support.waiting import eventually, stream_reader_blocked

__all__ = [
    "EmbeddedRuntime",
    "GenqProcess",
    "ManagedProcess",
    "PostgresCluster",
    "PostgresNotFound",
    "RedisServer",
    "eventually",
    "free_port",
    "port_is_open",
    "postgres_bin_dir",
    "stream_reader_blocked",
]
