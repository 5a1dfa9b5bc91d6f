"""Pacing benchmark: how closely a shared Redis token bucket holds a calls-per-second rate.

Run with ``make bench`` (or ``pytest -s -m benchmark tests/benchmarks/test_pacing_bench.py``).
For each rate (5 and 20 per second) and burst (1 and 2), 4 concurrent asyncio takers,
each with its own Redis client (as separate workers would have), share one bucket for
``CALLFLEET_BENCH_PACING_S`` seconds (default 30) on a private redis-server. Prints
tokens taken, achieved rate after the initial burst, error %, and the median / p99 / max
interval between consecutive paced tokens. Figures, not assertions.

With burst 1 the bucket is full whenever a token is due, so the time a taker needs to
wake up and reach Redis is lost on every token (the rate comes out slightly low, never
high). With burst 2 that lateness is carried over, so the long-run rate is exact, at the
cost of some intervals shorter than nominal.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import time
import uuid

import pytest
from redis.asyncio import Redis

from callfleet.dialer.pacing import TokenBucket
from tests.peers.redis import RedisServer

pytestmark = [pytest.mark.benchmark, pytest.mark.asyncio(loop_scope="session")]

SCENARIOS = [(5.0, 1), (5.0, 2), (20.0, 1), (20.0, 2)]  # (rate per s, burst)
TAKERS = 4
MEASURE_S = float(os.environ.get("CALLFLEET_BENCH_PACING_S", "30"))


async def _measure(url: str, rate_per_s: float, burst: int) -> dict[str, float]:
    key = f"bench:pacing:{uuid.uuid4().hex}"
    clients = [Redis.from_url(url) for _ in range(TAKERS)]
    buckets = [TokenBucket(c, key, rate_per_s, burst) for c in clients]
    stamps: list[float] = []
    start = time.monotonic()

    async def taker(bucket: TokenBucket) -> None:
        while (remaining := start + MEASURE_S - time.monotonic()) > 0:
            if await bucket.take(timeout_s=remaining):
                stamps.append(time.monotonic())

    try:
        await asyncio.gather(*(taker(b) for b in buckets))
    finally:
        for c in clients:
            await c.aclose()

    stamps.sort()
    paced = stamps[burst - 1 :]  # from the last token of the initial burst on
    intervals_ms = [(b - a) * 1000 for a, b in itertools.pairwise(paced)]
    achieved = (len(paced) - 1) / (paced[-1] - paced[0])
    expected_tokens = burst + int(rate_per_s * MEASURE_S)
    return {
        "rate_per_s": rate_per_s,
        "burst": burst,
        "tokens": len(stamps),
        "expected_tokens": expected_tokens,
        "achieved_per_s": round(achieved, 4),
        "error_pct": round((achieved - rate_per_s) / rate_per_s * 100, 3),
        "interval_median_ms": round(statistics.median(intervals_ms), 2),
        "interval_p99_ms": round(statistics.quantiles(intervals_ms, n=100)[98], 2),
        "interval_max_ms": round(max(intervals_ms), 2),
        "nominal_interval_ms": round(1000 / rate_per_s, 2),
    }


@pytest.mark.parametrize(("rate_per_s", "burst"), SCENARIOS)
async def test_pacing_error(redis_server: RedisServer, rate_per_s: float, burst: int) -> None:
    figures = await _measure(redis_server.url, rate_per_s, burst)
    print(
        f"\npacing, {TAKERS} takers sharing one bucket for {MEASURE_S:g} s: {json.dumps(figures)}"
    )
