"""The private PostgreSQL and Redis servers the tests start (tests/peers)."""

from __future__ import annotations

from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from tests.peers.ports import port_in_use
from tests.peers.postgres import PostgresServer
from tests.peers.redis import RedisServer


def test_postgres_answers_select_1(postgres_server: PostgresServer) -> None:
    assert postgres_server.url == (
        f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/callfleet"
    )
    engine = create_engine(postgres_server.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
            assert conn.execute(text("SELECT current_database()")).scalar_one() == "callfleet"
            assert conn.execute(text("SHOW fsync")).scalar_one() == "off"
    finally:
        engine.dispose()


def test_redis_answers_ping(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        assert client.ping() is True
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()


def test_postgres_stop_leaves_nothing_behind(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path).start()
    port, cluster = server.port, server.cluster_dir
    assert cluster is not None and cluster.is_dir()
    server.stop()
    assert not server.running
    assert not cluster.exists()
    assert not port_in_use(port, "tcp")


def test_redis_stop_leaves_nothing_behind(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    port = server.port
    server.stop()
    assert not server.running
    assert not port_in_use(port, "tcp")
