"""``TestPhone``: start a test phone process and talk to it from asyncio."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from callfleet.sip.testing.script import PhoneScript

log = logging.getLogger(__name__)

Event = dict[str, Any]


class TestPhone:
    """A SIP phone in a child process. ``await start()``, then ``uri`` to call it,
    ``wait_for("incoming")`` to follow what happens, ``send({"cmd": ...})`` to act."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        script: PhoneScript | None = None,
        *,
        name: str = "phone",
        tcp: bool = False,
        tls_cert: tuple[str, str] | None = None,
        codecs: str = "PCMU,PCMA,G722",
        log_level: str = "WARNING",
        bind: str = "127.0.0.1",
        public_address: str | None = None,
    ) -> None:
        self.script = script or PhoneScript()
        self.name = name
        self._tcp = tcp
        self._tls = tls_cert
        self._codecs = codecs
        self._log_level = log_level
        self._bind = bind
        self._public_address = public_address
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[Event] = []
        self.ports: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._stderr: asyncio.Task[None] | None = None
        self.stderr_lines: list[str] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def uri(self, user: str = "phone", transport: str = "udp") -> str:
        port = self.ports[transport]
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{user}@127.0.0.1:{port}{suffix}"

    async def start(self, timeout_s: float = 15.0) -> TestPhone:
        args = [
            sys.executable,
            "-m",
            "callfleet.sip.testing.phone",
            "--script",
            self.script.to_json(),
            "--user",
            self.name,
            "--codecs",
            self._codecs,
            "--log-level",
            self._log_level,
            "--bind",
            self._bind,
        ]
        if self._public_address:
            args += ["--public-address", self._public_address]
        if self._tcp:
            args += ["--tcp-port", "0"]
        if self._tls:
            args += ["--tls-port", "0", "--tls-cert", self._tls[0], "--tls-key", self._tls[1]]
        self.proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = asyncio.ensure_future(self._read())
        self._stderr = asyncio.ensure_future(self._read_stderr())
        ready = await self.wait_for("ready", timeout_s=timeout_s)
        self.ports = ready["ports"]
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: non-JSON output %r", self.name, line[:200])
                continue
            self.events.append(event)
            self._changed.set()
        self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr_lines.append(line.decode(errors="replace").rstrip())

    def find(self, event: str, **match: Any) -> list[Event]:
        return [
            e
            for e in self.events
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    async def wait_for(
        self,
        event: str,
        *,
        timeout_s: float = 10.0,
        where: Callable[[Event], bool] | None = None,
        **match: Any,
    ) -> Event:
        """The first event named ``event`` whose fields equal ``match`` (already seen
        or still to come)."""

        async def poll() -> Event:
            while True:
                for e in self.find(event, **match):
                    if where is None or where(e):
                        return e
                if self.proc is not None and self.proc.returncode is not None:
                    tail = "\n".join(self.stderr_lines[-20:])
                    raise RuntimeError(f"test phone {self.name} exited:\n{tail}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(poll(), timeout_s)
        except TimeoutError:
            raise TimeoutError(
                f"test phone {self.name}: no {event} {match or ''} within {timeout_s} s; "
                f"saw {[e.get('event') for e in self.events]}; stderr tail: "
                f"{self.stderr_lines[-10:]}"
            ) from None

    async def send(self, cmd: Event) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()

    async def stop(self, timeout_s: float = 5.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            await self.send({"cmd": "quit"})
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except (TimeoutError, ConnectionError, BrokenPipeError):
            self.proc.kill()
            await self.proc.wait()
        for task in (self._reader, self._stderr):
            if task is not None:
                task.cancel()

    async def __aenter__(self) -> TestPhone:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
