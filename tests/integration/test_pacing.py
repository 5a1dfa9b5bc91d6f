"""Token bucket and leased semaphore (callfleet.dialer.pacing) on a private Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from callfleet.dialer.pacing import Lease, LeasedSemaphore, TokenBucket
from tests.peers.redis import RedisServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

ClientFactory = Callable[[], Awaitable[Redis]]


@pytest_asyncio.fixture(loop_scope="session")
async def clients(redis_server: RedisServer) -> AsyncIterator[ClientFactory]:
    """``await clients()`` opens a separate Redis client (as another worker would have);
    all are closed after the test."""
    opened: list[Redis] = []

    async def make() -> Redis:
        client = Redis.from_url(redis_server.url)
        opened.append(client)
        await client.ping()
        return client

    yield make
    for client in opened:
        await client.aclose()


@pytest.fixture
def key() -> str:
    return f"test:pacing:{uuid.uuid4().hex}"


# -- TokenBucket ----------------------------------------------------------------------


async def test_bucket_gives_burst_at_once_then_paces_at_rate_across_workers(
    clients: ClientFactory, key: str
) -> None:
    rate_per_s, burst, duration_s = 5.0, 4, 3.0
    buckets = [TokenBucket(await clients(), key, rate_per_s, burst) for _ in range(2)]
    taken: list[float] = []
    start = time.monotonic()

    async def worker(bucket: TokenBucket) -> None:
        while (remaining := start + duration_s - time.monotonic()) > 0:
            if await bucket.take(timeout_s=remaining):
                taken.append(time.monotonic() - start)

    await asyncio.gather(*(worker(b) for b in buckets))

    expected = burst + int(rate_per_s * duration_s)  # 4 + 15
    assert abs(len(taken) - expected) <= 1, taken
    assert all(t < 0.1 for t in taken[:burst]), taken  # the burst comes at once
    assert taken[burst] > 0.1, taken  # ... and then the bucket is empty
    paced = taken[burst:]
    mean_interval_s = (paced[-1] - paced[0]) / (len(paced) - 1)
    assert mean_interval_s == pytest.approx(1 / rate_per_s, rel=0.05), paced


async def test_bucket_with_injected_clock_is_exact(clients: ClientFactory, key: str) -> None:
    redis = await clients()
    bucket = TokenBucket(redis, key, rate_per_s=2.0, burst=3)

    assert [await bucket.acquire(now=1000.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await bucket.acquire(now=1000.0) == 0.5  # empty: one token every 0.5 s
    assert await bucket.acquire(now=1000.25) == 0.25  # half a token refilled, not taken
    assert await bucket.acquire(now=1000.5) == 0.0
    assert await bucket.acquire(now=1000.5) == 0.5
    assert await bucket.acquire(now=999.0) == 0.5  # a clock going back refills nothing
    # A long idle time refills up to the burst only.
    assert [await bucket.acquire(now=2000.0) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    # Fractional rates: one token per 4 s.
    slow = TokenBucket(redis, key + ":slow", rate_per_s=0.25, burst=1)
    assert await slow.acquire(now=10.0) == 0.0
    assert await slow.acquire(now=11.0) == 3.0
    assert await slow.acquire(now=14.0) == 0.0

    # The hash expires when idle for as long as a full refill takes (1.5 s) plus 1 s.
    assert bucket.idle_ttl_ms == 2500
    assert 0 < await redis.pttl(key) <= 2500


async def test_bucket_take_times_out_without_waiting_in_vain(
    clients: ClientFactory, key: str
) -> None:
    bucket = TokenBucket(await clients(), key, rate_per_s=0.5, burst=1)  # 1 token / 2 s
    assert await bucket.take(timeout_s=0) is True
    start = time.monotonic()
    assert await bucket.take(timeout_s=0) is False
    assert await bucket.take(timeout_s=1.0) is False  # next token is ~2 s away
    assert time.monotonic() - start < 0.5
    fast = TokenBucket(await clients(), key + ":fast", rate_per_s=10.0, burst=1)
    assert await fast.take(timeout_s=0) is True
    start = time.monotonic()
    assert await fast.take(timeout_s=1.0) is True
    assert 0.05 < time.monotonic() - start < 0.3


# -- LeasedSemaphore ------------------------------------------------------------------


async def test_semaphore_limit_holds_across_clients(clients: ClientFactory, key: str) -> None:
    a = LeasedSemaphore(await clients(), key, limit=2, lease_s=30.0)
    b = LeasedSemaphore(await clients(), key, limit=2, lease_s=30.0)

    lease_a1 = await a.acquire("a1")
    lease_b1 = await b.acquire("b1")
    assert isinstance(lease_a1, Lease) and isinstance(lease_b1, Lease)
    assert (lease_a1.key, lease_a1.holder_id) == (key, "a1")
    assert await a.acquire("a2") is None
    assert await b.acquire("b2") is None
    assert await a.count() == await b.count() == 2
    # Acquiring again under a held id renews that lease rather than taking a slot.
    again = await a.acquire("a1")
    assert again is not None and again.expires_at >= lease_a1.expires_at
    assert await b.count() == 2

    assert await a.release(lease_a1) is True
    assert await b.acquire("b2") is not None
    assert await a.acquire("a2") is None


async def test_semaphore_concurrent_acquires_never_exceed_limit(
    clients: ClientFactory, key: str
) -> None:
    sems = [LeasedSemaphore(await clients(), key, limit=5, lease_s=30.0) for _ in range(4)]
    results = await asyncio.gather(
        *(sems[i % 4].acquire(f"holder-{i}") for i in range(40)),
    )
    assert sum(r is not None for r in results) == 5
    assert await sems[0].count() == 5


async def test_expired_lease_frees_its_slot(clients: ClientFactory, key: str) -> None:
    redis = await clients()
    sem = LeasedSemaphore(redis, key, limit=1, lease_s=0.3)
    dead = await sem.acquire("dead-worker")
    assert dead is not None
    assert await sem.acquire("other") is None

    await asyncio.sleep(0.4)  # the holder died: no renew, no release

    assert await sem.count() == 0
    assert await sem.acquire("other") is not None
    assert await sem.renew(dead) is False
    assert await sem.release(dead) is False
    # The key expires with its last lease (0.3 s + 1 s margin), rounded up to the next ms.
    assert 0 < await redis.pttl(key) <= 1301


async def test_renew_keeps_the_lease(clients: ClientFactory, key: str) -> None:
    sem = LeasedSemaphore(await clients(), key, limit=1, lease_s=0.4)
    lease = await sem.acquire("alive")
    assert lease is not None
    first_expiry = lease.expires_at
    for _ in range(4):  # 0.8 s in all: twice the lease
        await asyncio.sleep(0.2)
        assert await sem.renew(lease) is True
        assert await sem.acquire("other") is None
    assert lease.expires_at > first_expiry + 0.7
    assert await sem.count() == 1


async def test_release_frees_the_slot(clients: ClientFactory, key: str) -> None:
    redis = await clients()
    sem = LeasedSemaphore(redis, key, limit=1, lease_s=30.0)
    lease = await sem.acquire("done")
    assert lease is not None
    assert await sem.release(lease) is True
    assert await sem.count() == 0
    assert await redis.exists(key) == 0
    assert await sem.release(lease) is False
    assert await sem.renew(lease) is False
    assert await sem.acquire("next") is not None


# -- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_per_s": 0, "burst": 1}, "rate_per_s must be a finite number > 0, not 0"),
        ({"rate_per_s": -2.5, "burst": 1}, "rate_per_s must be a finite number > 0, not -2.5"),
        (
            {"rate_per_s": float("nan"), "burst": 1},
            "rate_per_s must be a finite number > 0, not nan",
        ),
        ({"rate_per_s": 5.0, "burst": 0}, "burst must be >= 1, not 0"),
        ({"rate_per_s": 5.0, "burst": 1, "key": ""}, "key must not be empty"),
    ],
)
async def test_bucket_rejects_bad_arguments(
    clients: ClientFactory, kwargs: dict[str, object], message: str
) -> None:
    redis = await clients()
    kwargs = {"key": "k", **kwargs}
    with pytest.raises(ValueError) as exc_info:
        TokenBucket(redis, **kwargs)  # type: ignore[arg-type]
    assert str(exc_info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0, "lease_s": 10.0}, "limit must be >= 1, not 0"),
        ({"limit": 1, "lease_s": 0}, "lease_s must be a finite number > 0, not 0"),
        ({"limit": 1, "lease_s": -1.0}, "lease_s must be a finite number > 0, not -1.0"),
        ({"limit": 1, "lease_s": float("inf")}, "lease_s must be a finite number > 0, not inf"),
        ({"limit": 1, "lease_s": 10.0, "key": ""}, "key must not be empty"),
    ],
)
async def test_semaphore_rejects_bad_arguments(
    clients: ClientFactory, kwargs: dict[str, object], message: str
) -> None:
    redis = await clients()
    kwargs = {"key": "k", **kwargs}
    with pytest.raises(ValueError) as exc_info:
        LeasedSemaphore(redis, **kwargs)  # type: ignore[arg-type]
    assert str(exc_info.value) == message


async def test_bad_call_arguments(clients: ClientFactory, key: str) -> None:
    redis = await clients()
    bucket = TokenBucket(redis, key, rate_per_s=1.0, burst=1)
    with pytest.raises(ValueError, match=r"^timeout_s must be >= 0, not -1$"):
        await bucket.take(timeout_s=-1)
    sem = LeasedSemaphore(redis, key + ":sem", limit=1, lease_s=1.0)
    with pytest.raises(ValueError, match=r"^holder_id must not be empty$"):
        await sem.acquire("")
    foreign = Lease(key="elsewhere", holder_id="x", expires_at=0.0)
    with pytest.raises(ValueError) as exc_info:
        await sem.renew(foreign)
    assert str(exc_info.value) == f"lease is for key 'elsewhere', not {key + ':sem'!r}"
