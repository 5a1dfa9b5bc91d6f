"""Debian's baresip (1.0.0) as an independent SIP peer for tests.

Each instance runs ``baresip -f <own dir>`` in its own process group, listening for SIP
on 127.0.0.1 (a free UDP+TCP port) and for control on a ``ctrl_tcp`` socket (netstring
JSON). No audio device is used:

* audio source: module ``aufile`` plays a WAV file once per call (S16LE mono 8000 Hz;
  by default a generated 30 s 1 kHz tone) -- baresip 1.0's ``aufile`` is a *source
  only*;
* what baresip hears is recorded by the ``sndfile`` audio filter into ``rec_dir`` as
  ``dump-<timestamp>-dec.wav`` (and what it sends as ``...-enc.wav``);
* audio player / alert: ``aubridge`` (a loopback device that needs no hardware; nothing
  reads from it), so no ALSA device is touched;
* codecs: ``g711`` (PCMU, PCMA).

Calls are answered automatically (account ``;answermode=auto``, done by ``menu``).
Commands (``dial``, ``hangup``, ``accept``, ``reginfo``, ...; ``help`` lists them) are
menu commands sent over ctrl_tcp (1.0 has no long-named DTMF command);
events (``CALL_INCOMING``, ``CALL_RINGING``, ``CALL_ESTABLISHED``, ``CALL_CLOSED``,
``REGISTER_OK``, ...) are collected in ``events``. Events fired before the ctrl
connection is up (e.g. the first REGISTER_OK) are lost: use ``wait_registered()``,
which polls ``reginfo``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callfleet.media.tones import sine
from callfleet.media.wav import write_wav

from .ports import HOST, free_port, free_port_pair
from .process import PeerProcess

BARESIP_BIN = shutil.which("baresip") or "/usr/bin/baresip"
MODULES_DIR = "/usr/lib/baresip/modules"
# baresip's stdout is block-buffered when not a tty; line-buffer it so log_text() and
# the start-up check ("baresip is ready") see output as it happens.
_STDBUF = shutil.which("stdbuf")
_LINE_BUFFERED = [_STDBUF, "-oL", "-eL"] if _STDBUF else []


class BaresipError(RuntimeError):
    """baresip failed to start, died, or a control command failed."""


@dataclass
class BaresipEvent:
    """One ctrl_tcp event, e.g. ``type="CALL_ESTABLISHED"``; ``raw`` has all fields."""

    type: str
    klass: str = ""
    param: str = ""
    peer_uri: str = ""
    account_aor: str = ""
    direction: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0


def write_tone_wav(
    path: str | os.PathLike[str],
    *,
    freq_hz: float = 1000.0,
    seconds: float = 30.0,
    rate: int = 8000,
    amplitude: float = 0.3,
) -> Path:
    """Write a mono S16LE sine WAV (what baresip's aufile accepts at 8 kHz)."""
    out = Path(path)
    samples = sine(freq_hz, seconds * 1000, rate, amplitude_dbfs=20 * math.log10(amplitude))
    write_wav(out, samples, rate)
    return out


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _netstring(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data + b","


class Baresip(PeerProcess):
    """A baresip process answering (and placing) calls on 127.0.0.1.

    Without ``registrar`` the account is ``sip:<user>@127.0.0.1:<port>`` and registers
    nowhere (reach it directly at ``uri``). With ``registrar="127.0.0.1:5060"`` and
    ``password``, the account is ``sip:<user>@<registrar>`` and it REGISTERs there
    (digest auth with ``user``/``password``), ``regint`` seconds.
    """

    error = BaresipError
    port_clash = "in use"

    def __init__(
        self,
        tmp_path: str | os.PathLike[str],
        *,
        user: str = "baresip",
        name: str | None = None,
        audio_file: str | os.PathLike[str] | None = None,
        registrar: str | None = None,
        password: str | None = None,
        transport: str = "udp",
        answermode: str = "auto",
        regint: int = 60,
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
        port: int | None = None,
        extra_account_params: str = "",
        extra_config: str = "",
        start_timeout_s: float = 10.0,
    ) -> None:
        self.user = user
        self.name = name or f"baresip-{user}"
        super().__init__(Path(tmp_path) / self.name, "baresip.log", start_timeout_s, port)
        self.config_dir = self.dir / "config"
        self.rec_dir = self.dir / "recordings"
        self.audio_file = Path(audio_file) if audio_file is not None else None
        self.registrar = registrar
        self.password = password
        self.transport = transport
        self.answermode = answermode
        self.regint = regint
        self.codecs = codecs
        self.extra_account_params = extra_account_params
        self.extra_config = extra_config
        self._ctrl_port: int | None = None
        self._ctrl: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[BaresipEvent] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._token = 0
        self._send_lock = threading.Lock()

    # -- properties -------------------------------------------------------------------

    @property
    def ctrl_port(self) -> int:
        if self._ctrl_port is None:
            raise BaresipError("ctrl port not chosen yet: call start() first")
        return self._ctrl_port

    @property
    def uri(self) -> str:
        """Direct SIP URI of this peer (its contact): ``sip:<user>@127.0.0.1:<port>``."""
        return f"sip:{self.user}@{HOST}:{self.port}"

    @property
    def aor(self) -> str:
        """The account's address of record."""
        if self.registrar:
            return f"sip:{self.user}@{self.registrar}"
        return self.uri

    @property
    def events(self) -> list[BaresipEvent]:
        """All events received so far (a copy)."""
        with self._cond:
            return list(self._events)

    def event_types(self) -> list[str]:
        return [e.type for e in self.events]

    def log_text(self) -> str:
        """baresip's output so far (ANSI colour codes removed)."""
        return _ANSI.sub("", super().log_text())

    def recordings(self, kind: str = "dec") -> list[Path]:
        """WAV files written by sndfile: ``dec`` = what it heard, ``enc`` = what it sent.

        Sorted oldest first. Files are complete once the call has closed.
        """
        return sorted(self.rec_dir.glob(f"dump-*-{kind}.wav"), key=lambda p: p.stat().st_mtime)

    # -- config -----------------------------------------------------------------------

    def account_line(self) -> str:
        params = [f"answermode={self.answermode}"]
        params.append("audio_codecs=" + ",".join(self.codecs))
        if self.registrar:
            host = self.registrar
            if self.password is not None:
                params.append(f"auth_pass={self.password}")
            params.append(f"regint={self.regint}")
        else:
            host = f"{HOST}:{self.port}"
            params.append("regint=0")
        params.append("mwi=no")
        line = f"<sip:{self.user}@{host};transport={self.transport}>;" + ";".join(params)
        if self.extra_account_params:
            line += ";" + self.extra_account_params.lstrip(";")
        return line

    def config_text(self) -> str:
        assert self.audio_file is not None
        lines = [
            ("poll_method", "epoll"),
            ("sip_listen", f"{HOST}:{self.port}"),
            # Without this baresip puts the host's default address into SDP c= lines.
            ("net_interface", HOST),
            ("call_local_timeout", "120"),
            ("call_max_calls", "4"),
            ("audio_player", "aubridge,player"),
            ("audio_source", f"aufile,{self.audio_file}"),
            ("audio_alert", "aubridge,alert"),
            ("audio_path", "/usr/share/baresip"),
            ("audio_buffer", "20-160"),
            ("jitter_buffer_delay", "1-10"),
            ("rtp_stats", "no"),
            ("module_path", MODULES_DIR),
            ("module", "g711.so"),
            ("module", "aufile.so"),
            ("module", "aubridge.so"),
            ("module", "sndfile.so"),
            ("module_tmp", "account.so"),
            ("module_app", "menu.so"),
            ("module_app", "ctrl_tcp.so"),
            ("ctrl_tcp_listen", f"{HOST}:{self.ctrl_port}"),
            ("snd_path", str(self.rec_dir)),
        ]
        text = "\n".join(f"{k}\t\t{v}" for k, v in lines) + "\n"
        if self.extra_config:
            text += self.extra_config.rstrip("\n") + "\n"
        return text

    # -- lifecycle --------------------------------------------------------------------

    def _auto_ports(self) -> bool:
        return self._port is None and self._ctrl_port is None

    def _forget_ports(self) -> None:
        self._port = None
        self._ctrl_port = None

    def _prepare(self) -> list[str]:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = free_port_pair()
        if self._ctrl_port is None:
            self._ctrl_port = free_port("tcp")
        if self.audio_file is None:
            self.audio_file = write_tone_wav(self.dir / "tone-1khz.wav")
        (self.config_dir / "config").write_text(self.config_text())
        (self.config_dir / "accounts").write_text(self.account_line() + "\n")
        (self.config_dir / "contacts").write_text("\n")
        return [*_LINE_BUFFERED, BARESIP_BIN, "-f", str(self.config_dir), "-v"]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HOME"] = str(self.dir)
        return env

    def _ready(self) -> bool:
        """Connected to ctrl_tcp (once baresip says it is ready)."""
        if "baresip is ready" not in self.log_text():
            return False
        try:
            sock = socket.create_connection((HOST, self.ctrl_port), timeout=1.0)
        except OSError:
            return False
        sock.settimeout(None)
        self._ctrl = sock
        self._reader = threading.Thread(
            target=self._read_loop, name=f"{self.name}-ctrl", daemon=True
        )
        self._reader.start()
        return True

    def _read_loop(self) -> None:
        sock = self._ctrl
        assert sock is not None
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while True:
                head, sep, rest = buf.partition(b":")
                if not sep or not head.isdigit():
                    break
                size = int(head)
                if len(rest) < size + 1:
                    break
                payload, buf = rest[:size], rest[size + 1 :]
                self._dispatch(payload)
        with self._cond:
            self._cond.notify_all()

    def _dispatch(self, payload: bytes) -> None:
        try:
            msg = json.loads(payload.decode(errors="replace"))
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        with self._cond:
            if msg.get("event"):
                self._events.append(
                    BaresipEvent(
                        type=str(msg.get("type", "")),
                        klass=str(msg.get("class", "")),
                        param=str(msg.get("param", "")),
                        peer_uri=str(msg.get("peeruri", "")),
                        account_aor=str(msg.get("accountaor", "")),
                        direction=str(msg.get("direction", "")),
                        raw=msg,
                        at=time.monotonic(),
                    )
                )
            elif msg.get("response"):
                self._responses[str(msg.get("token", ""))] = msg
            self._cond.notify_all()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close ctrl, then stop baresip (``PeerProcess.stop``)."""
        if self._ctrl is not None:
            try:
                self._ctrl.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._ctrl.close()
            self._ctrl = None
        super().stop(timeout_s)
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "?"
        return f"<Baresip {self.user}@{HOST}:{port} pid={self.pid} running={self.running}>"

    # -- control ----------------------------------------------------------------------

    def command(self, command: str, params: str = "", timeout_s: float = 5.0) -> str:
        """Run a baresip (menu) command over ctrl_tcp; return its response text.

        Raises BaresipError if baresip reports failure or does not answer.
        """
        if self._ctrl is None:
            raise BaresipError("not started")
        with self._send_lock:
            self._token += 1
            token = str(self._token)
            body = {"command": command, "params": params, "token": token}
            self._ctrl.sendall(_netstring(json.dumps(body).encode()))
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while token not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    raise BaresipError(
                        f"no response to {command!r} in {timeout_s}s; log tail:\n{self.log_tail()}"
                    )
                self._cond.wait(min(left, 0.2))
            resp = self._responses.pop(token)
        data = str(resp.get("data", ""))
        if not resp.get("ok", False):
            raise BaresipError(f"command {command!r} {params!r} failed: {data}")
        return data

    def dial(self, uri: str) -> str:
        """Place a call to ``uri`` (menu ``dial``)."""
        return self.command("dial", uri)

    def hangup(self) -> str:
        """Hang up the current call (menu ``hangup``)."""
        return self.command("hangup")

    def answer(self) -> str:
        """Answer the current incoming call (menu ``accept``), for ``answermode=manual``."""
        return self.command("accept")

    def registration_state(self) -> str:
        """``"OK"``, ``"ERR"`` or ``""`` (not tried yet / no registrar), from ``reginfo``.

        (Registration events can fire before the ctrl connection exists, so the state
        is polled rather than awaited as an event.)
        """
        info = _ANSI.sub("", self.command("reginfo"))
        m = re.search(r"^>?\s*sip:\S+\s+(OK|ERR)\b", info, re.M)
        return m.group(1) if m else ""

    def wait_registered(self, timeout_s: float = 10.0) -> None:
        """Wait until the account is registered (``reginfo`` says OK)."""
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            state = self.registration_state()
            if state == "OK":
                return
            time.sleep(0.1)
        raise BaresipError(
            f"{self.name} not registered after {timeout_s}s (state {state!r}); "
            f"log tail:\n{self.log_tail(30)}"
        )

    def wait_event(
        self,
        type: str,
        timeout_s: float = 10.0,
        *,
        since: int = 0,
        predicate: Callable[[BaresipEvent], bool] | None = None,
    ) -> BaresipEvent:
        """Wait for an event of ``type`` (index ``>= since`` in ``events``).

        Raises TimeoutError with the events seen and the log tail.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for ev in self._events[since:]:
                    if ev.type == type and (predicate is None or predicate(ev)):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [e.type for e in self._events]
                    raise TimeoutError(
                        f"{self.name}: no {type} event in {timeout_s}s; events: {seen}; "
                        f"log tail:\n{self.log_tail(30)}"
                    )
                self._cond.wait(min(left, 0.2))
