"""One call-host process for the media benchmark.

Places ``--calls`` calls to the given far ends, and on each runs an echo through
asyncio: every frame PJSIP's clock thread hands to ``audio_in`` is written back to
``audio_out`` (after a 40 ms jitter margin). Over the measurement window it records,
per frame, the lateness from the clock thread capturing it to the loop consuming it,
plus playout underruns, the process's CPU time and RSS. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import numpy as np
import psutil

from callfleet.sip.call import Call
from callfleet.sip.config import EndpointConfig, Transport, TransportSpec
from callfleet.sip.endpoint import SipEndpoint

JITTER_MARGIN_FRAMES = 2


async def echo(call: Call, lateness_ms: list[float], measuring: asyncio.Event) -> None:
    out = call.audio_out
    assert out is not None
    silence = np.zeros(out.buffer.frame_samples, np.int16)
    for _ in range(JITTER_MARGIN_FRAMES):
        out.write(silence)
    async for frame in call.audio_in:
        if measuring.is_set() and frame.captured_at is not None:
            lateness_ms.append((time.perf_counter() - frame.captured_at) * 1000)
        out.write(frame.samples)


async def run(args: argparse.Namespace) -> dict[str, object]:
    proc = psutil.Process(os.getpid())
    config = EndpointConfig(transports=(TransportSpec(Transport.UDP, "127.0.0.1", 0),))
    async with SipEndpoint(config) as ep:
        await asyncio.sleep(0.5)
        idle_cpu0 = proc.cpu_times()
        await asyncio.sleep(2.0)
        idle_cpu1 = proc.cpu_times()
        idle_core = (sum(idle_cpu1[:2]) - sum(idle_cpu0[:2])) / 2.0
        rss_idle = proc.memory_info().rss
        uss_idle = proc.memory_full_info().uss
        calls = [await ep.dial(t) for t in args.targets[: args.calls]]
        answered = await asyncio.gather(*(c.wait_answered(15) for c in calls))
        if not all(answered):
            raise SystemExit(f"only {sum(answered)} of {len(calls)} calls answered")
        lateness: list[float] = []
        measuring = asyncio.Event()
        tasks = [asyncio.ensure_future(echo(c, lateness, measuring)) for c in calls]
        await asyncio.sleep(args.warmup)
        underruns0 = sum(c.audio_out.buffer.underruns for c in calls if c.audio_out)
        cpu0, t0 = proc.cpu_times(), time.perf_counter()
        measuring.set()
        await asyncio.sleep(args.measure)
        measuring.clear()
        cpu1, t1 = proc.cpu_times(), time.perf_counter()
        underruns = sum(c.audio_out.buffer.underruns for c in calls if c.audio_out) - underruns0
        rss = proc.memory_info().rss
        uss = proc.memory_full_info().uss  # pages only this process holds
        stats = [await c.rtp_stats() for c in calls]
        for c in calls:
            await c.hangup()
        for t in tasks:
            t.cancel()
    window = t1 - t0
    core = (sum(cpu1[:2]) - sum(cpu0[:2])) / window
    return {
        "calls": len(calls),
        "window_s": round(window, 2),
        "core_per_s": core,
        "idle_core_per_s": idle_core,
        "rss_mb": rss / 1e6,
        "rss_idle_mb": rss_idle / 1e6,
        "uss_mb": uss / 1e6,
        "uss_idle_mb": uss_idle / 1e6,
        "lateness_ms": lateness,
        "underruns": underruns,
        "rx_lost": sum(s.rx_lost for s in stats),
        "frames_in": sum(s.frames_in for s in stats),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--measure", type=float, default=15.0)
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
