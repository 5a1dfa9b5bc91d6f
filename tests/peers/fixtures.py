"""Session-scoped pytest fixtures for the private Redis and PostgreSQL servers.

Import them into a conftest or a test module::

    from tests.peers.fixtures import postgres_server, redis_server  # noqa: F401

Each server is started on first use, shared by the whole session, and stopped at its end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .postgres import PostgresServer
from .redis import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A started private redis-server on 127.0.0.1 (``.url``, ``.port``)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A started private PostgreSQL 15 with a ``callfleet`` database (``.url``, ``.port``)."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres")).start()
    try:
        yield server
    finally:
        server.stop()
