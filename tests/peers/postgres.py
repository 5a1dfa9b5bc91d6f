"""A private PostgreSQL server for tests (Debian's postgresql 15 binaries).

``start()`` runs ``initdb`` (trust authentication for local sockets and 127.0.0.1,
UTF8, C locale, no fsync) into a fresh cluster directory, then ``postgres`` in the
foreground as our child (own process group, see ``PeerProcess``) listening on
127.0.0.1 on a free TCP port with its Unix socket in the cluster directory and
``fsync=off``, and finally creates the database ``callfleet``. It takes about a second.

PostgreSQL refuses to run as root: when we are root, ``initdb`` and ``postgres`` run as
the ``postgres`` system user (through ``setpriv``, which execs in place, so the process
we signal is the postmaster itself). The cluster directory is a short private
``mkdtemp`` under the system temp dir, not inside ``tmp_path``, for two reasons: pytest's
temp dirs are mode 0700 and owned by root (the ``postgres`` user could not reach them),
and a Unix socket path must stay under 108 bytes. ``stop()`` removes it; the log stays
in ``<tmp_path>/postgres/postgres.log``.

``stop()`` sends SIGQUIT (what ``pg_ctl stop -m immediate`` sends), so the postmaster
ends its backends and frees its shared memory at once; anything left is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import psycopg

from .ports import HOST, free_port
from .process import PeerProcess


def _pg_bin_dir() -> Path:
    """The newest Debian PostgreSQL server install (``/usr/lib/postgresql/<major>/bin``)."""
    installs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return installs[-1].parent if installs else Path("/usr/lib/postgresql/15/bin")


PG_BIN_DIR = _pg_bin_dir()
SUPERUSER = "postgres"
DATABASE = "callfleet"
#: Log line of a postmaster that accepts connections.
READY_TEXT = "database system is ready to accept connections"


class PostgresServerError(RuntimeError):
    """initdb or postgres failed, or the server died."""


def _run_as_postgres() -> list[str]:
    """Command prefix that runs the rest as the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return [setpriv, f"--reuid={SUPERUSER}", f"--regid={SUPERUSER}", "--init-groups"]


class PostgresServer(PeerProcess):
    """A private PostgreSQL 15 server on 127.0.0.1 with a ``callfleet`` database.

    ``url`` is the SQLAlchemy URL for psycopg 3
    (``postgresql+psycopg://postgres@127.0.0.1:<port>/callfleet``); ``dsn`` is the same
    for plain psycopg. ``tmp_path`` is a directory we may create files in (e.g. pytest's
    ``tmp_path``); a ``postgres`` subdir gets the server log.
    """

    error = PostgresServerError
    # postgres logs 'could not bind IPv4 address "127.0.0.1": Address already in use'.

    def __init__(
        self,
        tmp_path: str | os.PathLike[str],
        *,
        port: int | None = None,
        start_timeout_s: float = 30.0,
        bin_dir: str | os.PathLike[str] = PG_BIN_DIR,
    ) -> None:
        super().__init__(Path(tmp_path) / "postgres", "postgres.log", start_timeout_s, port)
        self.bin_dir = Path(bin_dir)
        self.cluster_dir: Path | None = None
        self._log_offset = 0  # readiness is judged on the log written by this run only

    # -- properties -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port postgres listens on (127.0.0.1)."""
        return super().port

    @property
    def host(self) -> str:
        return HOST

    @property
    def database(self) -> str:
        return DATABASE

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of the ``callfleet`` database."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        """libpq URL of the ``callfleet`` database (for ``psycopg.connect``)."""
        return self._dsn(DATABASE)

    def fresh_database(self, name: str) -> str:
        """Drop and create database ``name``; returns its SQLAlchemy URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be letters, digits and _: {name!r}")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{name}"

    def _dsn(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    @property
    def data_dir(self) -> Path:
        if self.cluster_dir is None:
            raise PostgresServerError("no cluster yet: call start() first")
        return self.cluster_dir / "data"

    @property
    def socket_dir(self) -> Path:
        if self.cluster_dir is None:
            raise PostgresServerError("no cluster yet: call start() first")
        return self.cluster_dir / "run"

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        super().start()
        try:
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def _auto_ports(self) -> bool:
        return self._port is None

    def _forget_ports(self) -> None:
        self._port = None

    def _initdb(self) -> None:
        """Create the cluster directory and run initdb into it (once per instance)."""
        if self.cluster_dir is not None:
            return
        cluster = Path(tempfile.mkdtemp(prefix="cf-pg-"))
        self.cluster_dir = cluster
        (cluster / "run").mkdir()
        if os.geteuid() == 0:
            for path in (cluster, cluster / "run"):
                shutil.chown(path, SUPERUSER, SUPERUSER)
        cmd = [
            *_run_as_postgres(),
            str(self.bin_dir / "initdb"),
            "--pgdata",
            str(cluster / "data"),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",  # local sockets, 127.0.0.1/32 and ::1/128
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
            "--no-instructions",
        ]
        with open(self._log_path, "ab") as log:
            rc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cluster
            ).returncode
        if rc != 0:
            raise PostgresServerError(f"initdb exited with {rc}; log tail:\n{self.log_tail()}")

    def _prepare(self) -> list[str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._initdb()
        if self._port is None:
            self._port = free_port("tcp")
        self._log_offset = self._log_path.stat().st_size if self._log_path.exists() else 0
        return [
            *_run_as_postgres(),
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self._port),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "shared_buffers=32MB",
            "-c",
            "logging_collector=off",
        ]

    def _ready(self) -> bool:
        try:
            with open(self._log_path, "rb") as log:
                log.seek(self._log_offset)
                return READY_TEXT.encode() in log.read()
        except FileNotFoundError:
            return False

    def _not_ready_message(self) -> str:
        return f"postgres not accepting connections on {HOST}:{self.port}"

    def _create_database(self) -> None:
        with psycopg.connect(self._dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Immediate shutdown (SIGQUIT), then kill what is left and remove the cluster."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    pass  # super().stop() kills the group
            super().stop(timeout_s)
            if self.cluster_dir is not None:
                _rmtree_retrying(self.cluster_dir)
                self.cluster_dir = None

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "?"
        return f"<PostgresServer {HOST}:{port} pid={self.pid} running={self.running}>"


def _rmtree_retrying(path: Path, timeout_s: float = 2.0) -> None:
    """Remove ``path``; retry briefly while exiting backends may still write into it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
