"""A private Redis server for tests (Debian's /usr/bin/redis-server).

Each instance listens on 127.0.0.1 only, on a free TCP port, with no persistence
(``--save '' --appendonly no``) and its working directory in its own temp dir. It runs
in the foreground as our child, in its own process group (see ``PeerProcess``), so
``stop()`` always ends it. Start-up is complete when ``PING`` answers ``+PONG``.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from .ports import HOST, free_port
from .process import PeerProcess

REDIS_SERVER_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServerError(RuntimeError):
    """redis-server failed to start or died."""


class RedisServer(PeerProcess):
    """A private redis-server on 127.0.0.1; ``url`` is ``redis://127.0.0.1:<port>/0``.

    ``tmp_path`` is a directory we may create files in (e.g. pytest's ``tmp_path``); a
    ``redis`` subdir holds the log (``redis.log``) and is the server's ``--dir``.
    """

    error = RedisServerError
    # redis-server logs "Could not create server TCP listening socket ...: bind: Address
    # already in use" when another process took the port between our probe and its bind.

    def __init__(
        self,
        tmp_path: str | os.PathLike[str],
        *,
        port: int | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(Path(tmp_path) / "redis", "redis.log", start_timeout_s, port)

    @property
    def port(self) -> int:
        """The TCP port redis-server listens on (127.0.0.1)."""
        return super().port

    @property
    def host(self) -> str:
        return HOST

    @property
    def url(self) -> str:
        """Connection URL for ``redis.Redis.from_url`` / ``redis.asyncio.from_url`` (db 0)."""
        return f"redis://{HOST}:{self.port}/0"

    # -- lifecycle --------------------------------------------------------------------

    def _auto_ports(self) -> bool:
        return self._port is None

    def _forget_ports(self) -> None:
        self._port = None

    def _prepare(self) -> list[str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = free_port("tcp")
        return [
            REDIS_SERVER_BIN,
            "--port",
            str(self._port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--loglevel",
            "notice",
        ]

    def _ready(self) -> bool:
        return self.ping()

    def _not_ready_message(self) -> str:
        return f"redis-server not answering PING on {HOST}:{self.port}"

    def ping(self, timeout_s: float = 0.5) -> bool:
        """Send an inline ``PING``; True if the server answered ``+PONG``."""
        try:
            with socket.create_connection((HOST, self.port), timeout=timeout_s) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "?"
        return f"<RedisServer {HOST}:{port} pid={self.pid} running={self.running}>"
