"""``PeerProcess``: what the real-process peers (kamailio, baresip) share.

A peer runs as our child in its own process group with stdout+stderr in a log file in
its directory. ``start()`` re-picks automatically chosen ports (up to 3 tries) when the
process fails because another one grabbed a port first; ``stop()`` kills the whole group;
an atexit hook stops whatever a test run left behind.

A subclass sets ``error`` (the exception it raises) and ``port_clash`` (the log text of a
failed bind), and implements ``_prepare()`` (write config, pick ports, return the
command line), ``_ready()`` (has start-up finished?), ``_auto_ports()`` and
``_forget_ports()``.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

_START_ATTEMPTS = 3


class PeerProcess:
    """Base of a peer process logging to ``<directory>/<log_name>``, SIP on ``port``."""

    error: ClassVar[type[RuntimeError]] = RuntimeError
    #: Text in the log that says a port was taken (start() then retries on new ports).
    port_clash: ClassVar[str] = "Address already in use"

    def __init__(
        self, directory: Path, log_name: str, start_timeout_s: float, port: int | None = None
    ) -> None:
        self.dir = directory
        self.start_timeout_s = start_timeout_s
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = directory / log_name
        self._log_file: IO[bytes] | None = None
        self._lock = threading.RLock()

    # -- to implement ------------------------------------------------------------------

    def _prepare(self) -> list[str]:
        """Create files, choose ports; return the command line to run."""
        raise NotImplementedError

    def _environment(self) -> dict[str, str] | None:
        """Environment of the process (None: ours)."""
        return None

    def _ready(self) -> bool:
        """Whether the running process has finished starting up (polled)."""
        raise NotImplementedError

    def _not_ready_message(self) -> str:
        return f"{self._name()} not ready"

    def _auto_ports(self) -> bool:
        """Whether all ports are ours to choose (so may be re-picked on a clash)."""
        raise NotImplementedError

    def _forget_ports(self) -> None:
        """Drop the chosen ports so that ``_prepare()`` picks new ones."""
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------

    def _name(self) -> str:
        return type(self).__name__.lower()

    @property
    def port(self) -> int:
        """The SIP port (UDP and TCP)."""
        if self._port is None:
            raise self.error("port not chosen yet: call start() first")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """Everything the process wrote to stdout/stderr so far."""
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Prepare and start the process and wait until it is ready.

        Raises ``error`` (with the log tail) if it exits or is not ready in time.
        Automatically chosen ports are re-picked (up to 3 tries) if another process
        grabbed one between our probe and the peer's bind.
        """
        auto_ports = self._auto_ports()
        for attempt in range(_START_ATTEMPTS):
            try:
                return self._start_once()
            except self.error:
                if (
                    not auto_ports
                    or attempt == _START_ATTEMPTS - 1
                    or self.port_clash not in self.log_text()
                ):
                    raise
                self._forget_ports()
                self._log_path.rename(self._log_path.with_suffix(f".failed{attempt}.log"))
        raise AssertionError("unreachable")

    def _start_once(self) -> Self:
        with self._lock:
            if self.running:
                return self
            cmd = self._prepare()
            self._log_file = open(self._log_path, "ab")
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=str(self.dir),
                env=self._environment(),
                start_new_session=True,
            )
            _LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise self.error(
                    f"{self._name()} exited with {rc} during start-up; log tail:\n{self.log_tail()}"
                )
            if self._ready():
                return
            if time.monotonic() >= deadline:
                raise self.error(
                    f"{self._not_ready_message()} after {self.start_timeout_s}s; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the process and everything in its group (see ``kill_group``)."""
        with self._lock:
            if self._proc is not None:
                kill_group(self._proc, timeout_s)
            _LIVE.discard(self)
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_LIVE: set[PeerProcess] = set()


@atexit.register
def _stop_all() -> None:
    """Last resort: leave no peer process behind if a test run exits without stop()."""
    for peer in list(_LIVE):
        peer.stop(timeout_s=1.0)


def kill_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Stop ``proc`` (leader of its own process group) and everything in its group.

    SIGTERM goes to the main process only: kamailio's main then stops and reaps its
    workers itself (signalling the whole group races its SIGCHLD handling and can make
    it hang); baresip is a single process. Whatever is left after ``timeout_s`` gets
    SIGKILL.
    """
    pgid = proc.pid  # start_new_session=True -> it leads its own group
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL always works
        pass
    # Orphaned workers are reaped by init; wait briefly until the group is empty.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)
