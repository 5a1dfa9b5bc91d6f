"""Media path benchmark: concurrent calls, each echoing audio through asyncio.

Run with ``make bench``. Call-host processes run on core 0 and the far-end test
phones on core 1 (as far as a 2-core machine allows). Prints per scenario: CPU
core-seconds per second per call, RSS per call, frame lateness (clock thread → loop)
p50/p99 and playout underruns. Figures, not assertions: targets are in the issue.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys

import numpy as np
import pytest

from callfleet.sip.testing import PhoneScript, TestPhone

pytestmark = [pytest.mark.benchmark, pytest.mark.asyncio(loop_scope="session")]

SCENARIOS = [4, 10, 50, 100]
PHONE_CORE, HOST_CORE = 1, 0
MEASURE_S = float(os.environ.get("CALLFLEET_BENCH_MEASURE_S", "15"))


def _pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > core:  # type: ignore[operator]
        os.sched_setaffinity(0, {core})


async def _host(calls: int, targets: list[str]) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        "taskset",
        "-c",
        str(HOST_CORE),
        sys.executable,
        "-m",
        "tests.benchmarks.callhost",
        "--calls",
        str(calls),
        "--measure",
        str(MEASURE_S),
        *targets,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    for line in out.decode().splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]
    raise RuntimeError(f"call host failed: {err.decode()[-2000:]}")


@pytest.mark.parametrize("total_calls", SCENARIOS)
async def test_concurrent_echo_calls(total_calls: int) -> None:
    per_process = 4  # the PyPI wheel's PJSUA_MAX_CALLS; read at run time by the endpoint
    n_proc = math.ceil(total_calls / per_process)
    phones = [TestPhone(PhoneScript(tone_hz=440 + 10 * i), name=f"far{i}") for i in range(n_proc)]
    await asyncio.gather(*(p.start(timeout_s=60) for p in phones))
    for p in phones:
        os.sched_setaffinity(p.pid, {PHONE_CORE})
    try:
        jobs = []
        remaining = total_calls
        for phone in phones:
            k = min(per_process, remaining)
            remaining -= k
            jobs.append(_host(k, [phone.uri(phone.name)] * k))
        results = await asyncio.gather(*jobs)
    finally:
        await asyncio.gather(*(p.stop() for p in phones))
    lateness = np.concatenate([np.asarray(r["lateness_ms"], float) for r in results])
    per_call_core = [r["core_per_s"] / r["calls"] for r in results]  # type: ignore[operator]
    rss_per_call = [r["rss_mb"] / r["calls"] for r in results]  # type: ignore[operator]
    uss_per_call = [r["uss_mb"] / r["calls"] for r in results]  # type: ignore[operator]
    added_per_call = [
        (r["rss_mb"] - r["rss_idle_mb"]) / r["calls"]
        for r in results  # type: ignore[operator]
    ]
    print(
        f"\n[media bench] {total_calls} calls in {n_proc} call-host processes "
        f"(hosts on core {HOST_CORE}, far ends on core {PHONE_CORE}, {MEASURE_S:.0f} s window)\n"
        f"  CPU per call: median {np.median(per_call_core):.4f} core-s/s "
        f"(min {min(per_call_core):.4f}, max {max(per_call_core):.4f}); "
        f"idle endpoint {np.median([r['idle_core_per_s'] for r in results]):.4f} core-s/s\n"
        f"  RSS per call (process RSS / calls): median {np.median(rss_per_call):.1f} MB "
        f"(max {max(rss_per_call):.1f}); added by calls: {np.median(added_per_call):.2f} MB/call; "
        f"idle process {np.median([r['rss_idle_mb'] for r in results]):.1f} MB; "
        f"unique (USS) per call {np.median(uss_per_call):.1f} MB\n"
        f"  frame lateness clock→loop: p50 {np.percentile(lateness, 50):.2f} ms, "
        f"p99 {np.percentile(lateness, 99):.2f} ms, max {lateness.max():.1f} ms "
        f"over {len(lateness)} frames\n"
        f"  underruns {sum(r['underruns'] for r in results)}, "  # type: ignore[misc]
        f"RTP lost {sum(r['rx_lost'] for r in results)}"  # type: ignore[misc]
    )
    assert len(lateness) > 0
