"""``callfleet worker --calls N``: as many call-host processes as N calls need.

A PJSIP build holds a fixed number of calls per process (4 for the PyPI wheel), so the
supervisor asks the library for that capacity, starts ceil(N / capacity) Celery
workers on the calls queue (threads pool, concurrency = capacity), each with its own
SIP port, restarts one that dies, and on SIGTERM asks them all to drain: Celery's warm
shutdown lets running calls finish before the process exits.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: A child that dies sooner than this after its start is restarted after a pause.
RESTART_BACKOFF_S = 2.0


def celery_worker_command(
    queues: str, name: str, *extra: str, concurrency: int, loglevel: str = "INFO"
) -> list[str]:
    """A Celery worker of callfleet's app on ``queues`` (comma-separated)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "callfleet.workers.celery_app",
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "-n",
        name,
        *extra,
        "--loglevel",
        loglevel,
    ]


def call_host_command(name: str, concurrency: int, loglevel: str = "INFO") -> list[str]:
    """The command line of one call-host process: a Celery worker on the calls queue
    with a threads pool as wide as the process's call capacity."""
    return celery_worker_command(
        "calls",
        name,
        "-P",
        "threads",
        "--without-gossip",
        "--without-mingle",
        concurrency=concurrency,
        loglevel=loglevel,
    )


def probe_capacity() -> int:
    """Calls one process of this PJSIP build can hold (starts PJSIP once, in a child)."""
    code = (
        "import asyncio\n"
        "from callfleet.sip.config import EndpointConfig, TransportSpec\n"
        "from callfleet.sip.endpoint import SipEndpoint\n"
        "async def main():\n"
        "    async with SipEndpoint(EndpointConfig(transports=(TransportSpec(port=0, "
        "bind_address='127.0.0.1'),))) as ep:\n"
        "        print(ep.capacity)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@dataclass
class Child:
    index: int
    sip_port: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    env: dict[str, str] = field(default_factory=dict)


class Supervisor:
    def __init__(
        self,
        calls: int,
        *,
        sip_port: int = 5060,
        capacity: int | None = None,
        loglevel: str = "INFO",
    ) -> None:
        if calls < 1:
            raise ValueError(f"--calls must be >= 1, got {calls}")
        self.capacity = capacity or probe_capacity()
        self.processes = math.ceil(calls / self.capacity)
        self.loglevel = loglevel
        # Each process gets its own SIP port: base, base+1, ... (0: every one picks).
        self.children = [
            Child(i, 0 if sip_port == 0 else sip_port + i) for i in range(self.processes)
        ]
        self._stopping = False

    def command(self, child: Child) -> list[str]:
        return call_host_command(
            f"callhost{child.index}@{socket.gethostname()}", self.capacity, self.loglevel
        )

    def spawn(self, child: Child) -> None:
        env = {
            **os.environ,
            "CALLFLEET_SIP_PORT": str(child.sip_port),
            "CALLFLEET_WORKER_ID": f"{socket.gethostname()}-callhost{child.index}",
        }
        child.proc = subprocess.Popen(self.command(child), env=env)
        child.started_at = time.monotonic()
        log.info(
            "call host %d started (pid %d, SIP port %s)",
            child.index,
            child.proc.pid,
            child.sip_port or "any",
        )

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for child in self.children:
            self.spawn(child)
        while not self._stopping:
            for child in self.children:
                assert child.proc is not None
                code = child.proc.poll()
                if code is None or self._stopping:
                    continue
                log.error("call host %d exited with %s: restarting", child.index, code)
                if time.monotonic() - child.started_at < RESTART_BACKOFF_S:
                    time.sleep(RESTART_BACKOFF_S)
                child.restarts += 1
                self.spawn(child)
            time.sleep(0.5)
        return self.drain()

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("signal %d: draining call hosts", signum)
        self._stopping = True

    def drain(self) -> int:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)  # Celery warm shutdown
        for child in self.children:
            if child.proc is not None:
                child.proc.wait()
        return 0
