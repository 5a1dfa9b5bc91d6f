"""The test phone process: ``python -m callfleet.sip.testing.phone --script JSON``.

Speaks JSON lines: events on stdout (``{"event": "ready", ...}``), commands on stdin
(``{"cmd": "dial", "to": "sip:..."}``). Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

import numpy as np

from callfleet.media.frame import FRAME_MS, samples_per_frame
from callfleet.media.tones import sine
from callfleet.media.wav import WavWriter, read_wav
from callfleet.sip.call import Call
from callfleet.sip.config import EndpointConfig, Transport, TransportSpec
from callfleet.sip.dtmf import DtmfMethod
from callfleet.sip.endpoint import IncomingCall, SipEndpoint
from callfleet.sip.testing.script import PhoneScript

log = logging.getLogger("callfleet.testphone")


# JSON events go to the original stdout; fd 1 is pointed at stderr so that anything
# PJSIP's C code prints before logging is configured cannot corrupt the event stream.
_EVENTS = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)


class Phone:
    def __init__(self, endpoint: SipEndpoint, script: PhoneScript) -> None:
        self.ep = endpoint
        self.script = script
        #: The script each call follows (``by_callee`` can vary it per dialled number).
        self.scripts: dict[str, PhoneScript] = {}
        self.calls: dict[str, Call] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Keys each call received, for its IVR.
        self.keys: dict[str, asyncio.Queue[str]] = {}

    def emit(self, event: str, **data: Any) -> None:
        _EVENTS.write(json.dumps({"event": event, "t": time.time(), **data}) + "\n")
        _EVENTS.flush()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("phone task failed", exc_info=task.exception())
            self.emit("error", message=repr(task.exception()))

    # -- per-call behaviour -------------------------------------------------------------

    def script_of(self, call: Call) -> PhoneScript:
        return self.scripts.get(call.id, self.script)

    def track(self, call: Call, origin: str, script: PhoneScript | None = None) -> None:
        self.calls[call.id] = call
        self.scripts[call.id] = script or self.script
        keys = self.keys[call.id] = asyncio.Queue()
        call.on("state", lambda s: self.emit("state", call=call.id, state=s.value))

        def on_dtmf(e: Any) -> None:
            self.emit(
                "dtmf",
                call=call.id,
                digit=e.digit,
                method=e.method.value,
                duration_ms=e.duration_ms,
            )
            keys.put_nowait(e.digit)

        call.on("dtmf", on_dtmf)
        call.on(
            "transfer_request",
            lambda target, code, new: self.on_transfer(call, target, code, new),
        )
        call.on("replaced", lambda new: self.on_replaced(call, new))
        call.on("ended", lambda reason: self.on_ended(call, reason))
        self.emit("call", call=call.id, origin=origin, remote=call.remote_uri)
        if call.is_ended:
            # A dial refused at once can end before dial() returns, before these
            # handlers existed: report it now, or the test never hears of it.
            assert call.end_reason is not None
            self.on_ended(call, call.end_reason)
            return
        call.set_refer_response(self.script_of(call).refer_code)
        self.spawn(self.media(call))

    def on_transfer(self, call: Call, target: str, code: int, new: Call | None) -> None:
        self.emit(
            "transfer_request",
            call=call.id,
            target=target,
            code=code,
            new_call=new.id if new else None,
        )
        if new is not None:
            self.track(new, "transfer")

    def on_replaced(self, call: Call, new: Call) -> None:
        self.emit("replaced", call=call.id, new_call=new.id)
        self.track(new, "replaces")

    def on_ended(self, call: Call, reason: Any) -> None:
        self.emit(
            "ended",
            call=call.id,
            reason=reason.value,
            code=call.sip_code,
            sip_reason=call.sip_reason,
            duration_s=round(call.duration_s, 3),
        )

    async def media(self, call: Call) -> None:
        try:
            await call.wait_media(timeout_s=120)
        except Exception:
            return
        s = self.script_of(call)
        if s.record_dir and s.record_stereo:
            path = os.path.join(s.record_dir, f"{call.id}.wav")
            call.start_recording(path)
            self.emit("recording_started", call=call.id, path=path)
            call.on("ended", lambda _: self.emit("recorded", call=call.id, path=path))
        elif s.record_dir:
            self.spawn(self.record(call, os.path.join(s.record_dir, f"{call.id}.wav")))
        if s.ivr is not None:
            self.spawn(self.ivr(call, s))
        elif not s.silent:
            self.spawn(self.talk(call))
        if call.direction == "outbound":
            self.spawn(self.after_answer(call))

    async def talk(self, call: Call) -> None:
        out = call.audio_out
        assert out is not None
        rate = out.sample_rate
        script = self.script_of(call)
        if script.play:
            for path in script.play:
                samples, _ = read_wav(path, sample_rate=rate)
                out.write(samples, rate)
            out.finish()
            return
        if script.tone_hz:
            # Keep ~200 ms queued so the clock never starves.
            chunk = sine(script.tone_hz, 1000, rate, amplitude_dbfs=script.tone_dbfs)
            pos = 0
            frame = samples_per_frame(rate)
            while not call.is_ended:
                while out.queued_ms < 200:
                    take = np.take(chunk, range(pos, pos + frame), mode="wrap")
                    pos = (pos + frame) % len(chunk)
                    out.write(take.astype(np.int16), rate)
                await asyncio.sleep(FRAME_MS / 1000)

    async def ivr(self, call: Call, script: PhoneScript) -> None:
        """Play the phone menu of ``script.ivr`` (see ``PhoneScript``)."""
        assert script.ivr is not None and call.audio_out is not None
        if call.direction == "outbound" and not await call.wait_answered():
            return
        out = call.audio_out
        keys = self.keys[call.id]
        root: dict[str, Any] = script.ivr
        node, path, repeat = root, "", 0
        while not call.is_ended:
            if "human" in node:
                samples, _ = read_wav(node["human"], sample_rate=out.sample_rate)
                out.clear()
                out.write(samples, out.sample_rate)
                out.finish()
                self.emit("ivr_human", call=call.id, path=path)
                return
            samples, _ = read_wav(node["prompt"], sample_rate=out.sample_rate)
            out.clear()
            out.write(samples, out.sample_rate)
            out.finish()
            self.emit("ivr_prompt", call=call.id, node=node["prompt"], path=path, repeat=repeat)
            wait_s = len(samples) / out.sample_rate + script.ivr_repeat_s
            try:
                digit = await asyncio.wait_for(keys.get(), wait_s)
            except TimeoutError:
                repeat += 1
                if repeat > script.ivr_max_repeats:
                    self.emit("ivr_gave_up", call=call.id, path=path)
                    await call.hangup()
                    return
                continue
            out.clear()  # a key cuts the prompt short
            child = node.get("options", {}).get(digit)
            self.emit(
                "ivr_digit", call=call.id, digit=digit, node=node["prompt"], accepted=bool(child)
            )
            repeat = 0
            if child == "root":
                node, path = root, ""
            elif child is not None:
                node, path = child, path + digit

    async def record(self, call: Call, path: str) -> None:
        assert call.audio_out is not None
        writer = WavWriter(path, call.audio_out.sample_rate, channels=1)
        try:
            async for frame in call.audio_in:
                writer.write(frame.samples)
        finally:
            writer.close()
            self.emit("recorded", call=call.id, path=path)

    async def after_answer(self, call: Call) -> None:
        if not await call.wait_answered():
            return
        s = self.script_of(call)
        if s.dtmf:
            await asyncio.sleep(s.dtmf_after_s)
            await call.send_dtmf(s.dtmf, method=DtmfMethod(s.dtmf_method))
            self.emit("dtmf_sent", call=call.id, digits=s.dtmf)
        if s.hangup_after_s is not None:
            await asyncio.sleep(s.hangup_after_s)
            await call.hangup()

    async def on_incoming(self, incoming: IncomingCall) -> None:
        call = incoming.call
        self.emit(
            "incoming",
            call=call.id,
            caller=incoming.caller,
            caller_name=incoming.caller_name,
            callee=incoming.callee,
            headers=dict(incoming.headers),
        )
        s = self.script.for_callee(incoming.callee)
        self.track(call, "inbound", s)
        if s.answer == "reject":
            await call.reject(s.reject_code)
            return
        if s.ring_s:
            await call.ring()
            await asyncio.sleep(s.ring_s)
        if s.early_media_s:
            await call.early_media()
            await asyncio.sleep(s.early_media_s)
        if s.answer == "ignore" or call.is_ended:
            return
        await call.answer()
        self.spawn(self.after_answer(call))

    # -- commands -----------------------------------------------------------------------

    async def command(self, cmd: dict[str, Any]) -> None:
        name = cmd.get("cmd")
        call = self.calls.get(cmd.get("call", "")) if "call" in cmd else self._latest()
        if name == "dial":
            new = await self.ep.dial(cmd["to"], headers=cmd.get("headers"))
            self.track(new, "dial")
            self.emit("dialled", call=new.id, tag=cmd.get("tag"))
        elif name == "hangup" and call is not None:
            await call.hangup()
        elif name == "dtmf" and call is not None:
            await call.send_dtmf(cmd["digits"], method=DtmfMethod(cmd.get("method", "rfc4733")))
            self.emit("dtmf_sent", call=call.id, digits=cmd["digits"])
        elif name == "play" and call is not None and call.audio_out is not None:
            # Say something now (a WAV file), e.g. to answer or talk over an agent.
            out = call.audio_out
            samples, _ = read_wav(cmd["path"], sample_rate=out.sample_rate)
            out.write(samples, out.sample_rate)
            out.finish()
            self.emit("play_started", call=call.id, path=cmd["path"])
            self.spawn(self._played(call, out, cmd["path"]))
        elif name == "hold" and call is not None:
            await call.hold()
            self.emit("held", call=call.id)
        elif name == "quit":
            raise SystemExit(0)
        else:
            self.emit("error", message=f"bad command or no call: {cmd}")

    async def _played(self, call: Call, out: Any, path: str) -> None:
        played = await out.wait_played()
        self.emit("played", call=call.id, path=path, complete=played)

    def _latest(self) -> Call | None:
        live = [c for c in self.calls.values() if not c.is_ended]
        return live[-1] if live else None


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(args: argparse.Namespace) -> None:
    script = PhoneScript.from_json(args.script)
    transports = [
        TransportSpec(Transport.UDP, args.bind, args.udp_port, public_address=args.public_address)
    ]
    if args.tcp_port is not None:
        transports.append(TransportSpec(Transport.TCP, args.bind, args.tcp_port))
    if args.tls_port is not None:
        transports.append(
            TransportSpec(
                Transport.TLS,
                args.bind,
                args.tls_port,
                tls_cert_file=args.tls_cert,
                tls_key_file=args.tls_key,
            )
        )
    config = EndpointConfig(
        transports=tuple(transports), local_user=args.user, codecs=tuple(args.codecs.split(","))
    )
    async with SipEndpoint(config) as ep:
        phone = Phone(ep, script)
        ep.on_incoming(phone.on_incoming)
        ports = {t.kind.value: ep.transport_port(t.kind) for t in transports}
        phone.emit("ready", ports=ports, uri=ep.local_uri(), capacity=ep.capacity, pid=os.getpid())
        reader = await _stdin_lines()
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                cmd = json.loads(line)
            except json.JSONDecodeError as e:
                phone.emit("error", message=f"bad JSON command: {e}")
                continue
            try:
                await phone.command(cmd)
            except SystemExit:
                break
            except Exception as e:
                log.exception("command failed")
                phone.emit("error", message=f"{cmd.get('cmd')}: {e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="callfleet-testphone")
    parser.add_argument("--script", default="{}", help="PhoneScript as JSON")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--udp-port", type=int, default=0)
    parser.add_argument("--public-address", default=None, help="address advertised (NAT)")
    parser.add_argument("--tcp-port", type=int, default=None)
    parser.add_argument("--tls-port", type=int, default=None)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--user", default="phone")
    parser.add_argument("--codecs", default="PCMU,PCMA,G722")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
