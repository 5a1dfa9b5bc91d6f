"""``callfleet demo`` (for now): calls into a simulated phone network on loopback.

Test phones in child processes play the far ends: one answers and talks, one is busy,
one never answers, one plays an announcement as early media, and one accepts a
transfer. Every call is real SIP and RTP between processes; the demo prints what
happened and exits non-zero if any outcome differs from what the phone was told to do.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Callable

from callfleet.media.analysis import dominant_frequency_hz
from callfleet.media.tones import sine
from callfleet.media.wav import read_wav, write_wav
from callfleet.sip.config import EndpointConfig, Transport, TransportSpec
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.softphone import place_call
from callfleet.sip.testing.client import TestPhone
from callfleet.sip.testing.script import PhoneScript


async def run_demo(out: Callable[[str], None] = print) -> bool:
    workdir = tempfile.mkdtemp(prefix="callfleet-demo-")
    greeting = os.path.join(workdir, "greeting.wav")
    write_wav(greeting, sine(523, 1500, 8000, amplitude_dbfs=-14), 8000)
    config = EndpointConfig(transports=(TransportSpec(Transport.UDP, "127.0.0.1", 0),))
    network = {
        "alice (answers, talks, presses 42#)": PhoneScript(
            tone_hz=440, dtmf="42#", dtmf_after_s=0.8, record_dir=workdir, hangup_after_s=3.5
        ),
        "bob (busy)": PhoneScript(answer="reject", reject_code=486),
        "carol (never answers)": PhoneScript(answer="ignore", ring_s=0.1),
        "dave (announcement, then answers)": PhoneScript(
            early_media_s=1.0, tone_hz=660, hangup_after_s=1.0
        ),
    }
    expected = {
        "alice (answers, talks, presses 42#)": "completed",
        "bob (busy)": "busy",
        "carol (never answers)": "no_answer",
        "dave (announcement, then answers)": "completed",
    }
    ok = True
    async with SipEndpoint(config) as endpoint:
        out(f"SIP endpoint on udp/{endpoint.transport_port()} (capacity {endpoint.capacity} calls)")
        phones = {name: TestPhone(script, name=name.split()[0]) for name, script in network.items()}
        await asyncio.gather(*(p.start() for p in phones.values()))
        try:
            for name, phone in phones.items():
                out(f"\n== calling {name}")
                report = await place_call(
                    endpoint,
                    phone.uri(phone.name),
                    play=greeting,
                    duration_s=5.0,
                    ring_timeout_s=3.0,
                    report=lambda line: out("   " + line),
                )
                summary = f"   -> {report.end_reason}"
                if report.answered:
                    summary += f", answered in {report.answer_s:.2f} s, codec {report.codec}"
                    summary += f", {report.frames_received} frames heard"
                if report.dtmf_received:
                    summary += f", DTMF {report.dtmf_received!r}"
                out(summary)
                if report.end_reason != expected[name]:
                    out(f"   !! expected {expected[name]}")
                    ok = False
            alice = phones["alice (answers, talks, presses 42#)"]
            recorded = await alice.wait_for("recorded")
            samples, rate = read_wav(recorded["path"])
            heard = dominant_frequency_hz(samples[: int(1.2 * rate)], rate)
            out(f"\nalice heard our greeting at {heard:.0f} Hz (we played 523 Hz)")
            ok = ok and abs(heard - 523) < 5
            ok = await _transfer_demo(endpoint, out) and ok
        finally:
            await asyncio.gather(*(p.stop() for p in phones.values()))
    out("\ndemo " + ("passed: every outcome as scripted" if ok else "FAILED"))
    return ok


async def _transfer_demo(endpoint: SipEndpoint, out: Callable[[str], None]) -> bool:
    out("\n== blind transfer: call erin, then REFER her to the front desk")
    async with (
        TestPhone(PhoneScript(tone_hz=500), name="erin") as erin,
        TestPhone(PhoneScript(silent=True), name="desk") as desk,
    ):
        call = await endpoint.dial(erin.uri("erin"))
        if not await call.wait_answered(5):
            out("   !! erin did not answer")
            return False
        result = await call.blind_transfer(desk.uri("desk"))
        out(f"   transfer result: {result.status_code} {result.reason}; our leg: {call.end_reason}")
        incoming = await desk.wait_for("incoming")
        out(f"   the desk got a call from {incoming['caller']}")
        await erin.send({"cmd": "hangup"})
        return result.ok and incoming["caller"] == "erin"


def main() -> int:
    return 0 if asyncio.run(run_demo(lambda line: print(line, flush=True))) else 1


if __name__ == "__main__":
    sys.exit(main())
