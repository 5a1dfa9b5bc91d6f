"""Redis-backed pacing shared by any number of worker processes.

* ``TokenBucket``: calls-per-second pacing with a burst allowance (e.g. a trunk's CPS).
* ``LeasedSemaphore``: a cap on concurrent holders (e.g. live calls on a trunk) whose
  slots are leases, so that a worker that dies frees its slots when they expire.

Every operation is one Lua script run by Redis (``register_script``, EVALSHA), so it is
atomic however many processes share the key. The clock is Redis' own (``TIME`` inside
the script), so all workers agree on it whatever their local clocks say; scripts that
read ``TIME`` are safe under Redis' effects replication (the default since Redis 5).

Times are seconds (floats) since the Unix epoch as Redis' clock reads them.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis

#: Extra idle time (ms) before a key expires, beyond the moment its state stops mattering.
_EXPIRY_MARGIN_MS = 1000

# Shared Lua prelude: ``now`` from ARGV[i] if given, else from Redis' clock.
_NOW_LUA = """
local function clock(arg)
    if arg ~= nil and arg ~= '' then
        return tonumber(arg)
    end
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x)
    return string.format('%.17g', x)
end
"""

# KEYS[1] bucket hash {tokens, ts}; ARGV: rate (tokens/s), burst, ttl (ms), now (s or '').
# Returns the wait (s) as a string: '0' if a token was taken.
_BUCKET_ACQUIRE_LUA = (
    _NOW_LUA
    + """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local ttl_ms = tonumber(ARGV[3])
local now = clock(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
    tokens = burst
    ts = now
end
if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate)
    ts = now
end
local wait = 0
if tokens >= 1 then
    tokens = tokens - 1
else
    wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', fmt(tokens), 'ts', fmt(ts))
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return fmt(wait)
"""
)

# Purge expired leases and set the key to expire with its last lease.
_LEASES_LUA = (
    _NOW_LUA
    + """
local function purge(now)
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now))
end
local function expire_with_last_lease(margin_ms)
    local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    if last[2] ~= nil then
        redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(last[2]) * 1000) + margin_ms)
    end
end
"""
)

# KEYS[1] zset holder -> expiry; ARGV: holder, limit, lease (s), margin (ms).
# Returns the new expiry as a string, or nil when the semaphore is full.
_SEM_ACQUIRE_LUA = (
    _LEASES_LUA
    + """
local now = clock(nil)
purge(now)
local expiry = now + tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
    if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
        return false
    end
end
redis.call('ZADD', KEYS[1], fmt(expiry), ARGV[1])
expire_with_last_lease(tonumber(ARGV[4]))
return fmt(expiry)
"""
)

# KEYS[1] zset; ARGV: holder, lease (s), margin (ms). New expiry, or nil if lost.
_SEM_RENEW_LUA = (
    _LEASES_LUA
    + """
local now = clock(nil)
purge(now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
    return false
end
local expiry = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', fmt(expiry), ARGV[1])
expire_with_last_lease(tonumber(ARGV[3]))
return fmt(expiry)
"""
)

# KEYS[1] zset; ARGV: holder. 1 if the holder still had a live lease, else 0.
_SEM_RELEASE_LUA = (
    _LEASES_LUA
    + """
purge(clock(nil))
return redis.call('ZREM', KEYS[1], ARGV[1])
"""
)

# KEYS[1] zset. Number of live leases.
_SEM_COUNT_LUA = (
    _LEASES_LUA
    + """
purge(clock(nil))
return redis.call('ZCARD', KEYS[1])
"""
)


def _check_key(key: str) -> None:
    if not key:
        raise ValueError("key must not be empty")


class TokenBucket:
    """A token bucket in one Redis hash: ``burst`` tokens, refilled at ``rate_per_s``.

    Any number of processes may share ``key``; each ``acquire()`` is atomic. The bucket
    starts full, so ``burst`` tokens can be taken at once, then one every
    ``1 / rate_per_s`` seconds. A key left idle long enough to refill completely
    (``burst / rate_per_s`` seconds, plus a second) expires, which changes nothing: a
    missing bucket is a full one.

    ``rate_per_s``: tokens added per second (> 0, may be fractional, e.g. 0.5 for one
    call every 2 s). ``burst``: bucket capacity in tokens (>= 1).
    """

    def __init__(self, redis: Redis, key: str, rate_per_s: float, burst: int) -> None:
        _check_key(key)
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError(f"rate_per_s must be a finite number > 0, not {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, not {burst!r}")
        self.key = key
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        #: Key expiry (ms) after the last use: time to refill from empty, plus a margin.
        self.idle_ttl_ms = math.ceil(self.burst / self.rate_per_s * 1000) + _EXPIRY_MARGIN_MS
        self._acquire = redis.register_script(_BUCKET_ACQUIRE_LUA)

    async def acquire(self, now: float | None = None) -> float:
        """Take one token if there is one.

        Returns 0.0 when a token was taken; otherwise takes nothing and returns the
        seconds until one token will be available (if nobody else takes it first).

        ``now``: the clock in seconds, for tests; by default Redis' clock (``TIME``).
        All users of one key must use the same clock.
        """
        args: list[str | int | float] = [
            repr(self.rate_per_s),
            self.burst,
            self.idle_ttl_ms,
            "" if now is None else repr(float(now)),
        ]
        wait_s = float(await self._acquire(keys=[self.key], args=args))
        return max(0.0, wait_s)

    async def take(self, timeout_s: float) -> bool:
        """Wait for a token and take it; False if none could be had within ``timeout_s``.

        Sleeps for the wait ``acquire()`` reports (counted from when the request was
        sent), then tries again: another process may have taken that token first. Gives
        up at once, without sleeping, when the wait reaches beyond the deadline, since
        no token can arrive sooner.
        ``timeout_s`` (>= 0): 0 means try once.
        """
        if not timeout_s >= 0:
            raise ValueError(f"timeout_s must be >= 0, not {timeout_s!r}")
        deadline = time.monotonic() + timeout_s
        while True:
            # The wait counts from when Redis ran the script, which is after we sent the
            # request: sleeping from the send time keeps the round trip out of the pace.
            sent = time.monotonic()
            wait_s = await self.acquire()
            if wait_s == 0.0:
                return True
            if sent + wait_s > deadline:
                return False
            await asyncio.sleep(max(0.0, sent + wait_s - time.monotonic()))

    def __repr__(self) -> str:
        return f"<TokenBucket {self.key!r} rate_per_s={self.rate_per_s} burst={self.burst}>"


@dataclass(slots=True)
class Lease:
    """A slot held in a ``LeasedSemaphore``.

    ``expires_at``: when the slot is freed unless renewed, in seconds since the Unix
    epoch by Redis' clock; ``renew()`` moves it forward.
    """

    key: str
    holder_id: str
    expires_at: float


class LeasedSemaphore:
    """At most ``limit`` concurrent holders, each holding a lease of ``lease_s`` seconds.

    The holders are a Redis sorted set at ``key``, scored by lease expiry. Every
    operation first purges expired leases (atomically, in the same script), so a worker
    that dies without releasing frees its slot ``lease_s`` after its last renewal.
    A holder must ``renew()`` well within ``lease_s`` (e.g. every ``lease_s / 3``) to keep
    its slot. The key expires with its last lease.

    ``holder_id`` names the holder (e.g. a call id) and must be unique among those that
    share ``key``; acquiring again with an id that already holds a lease renews it.
    ``limit``: maximum number of live leases (>= 1). ``lease_s``: lease length in seconds
    (> 0).
    """

    def __init__(self, redis: Redis, key: str, limit: int, lease_s: float) -> None:
        _check_key(key)
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit!r}")
        if not (lease_s > 0 and math.isfinite(lease_s)):
            raise ValueError(f"lease_s must be a finite number > 0, not {lease_s!r}")
        self.key = key
        self.limit = int(limit)
        self.lease_s = float(lease_s)
        self._acquire = redis.register_script(_SEM_ACQUIRE_LUA)
        self._renew = redis.register_script(_SEM_RENEW_LUA)
        self._release = redis.register_script(_SEM_RELEASE_LUA)
        self._count = redis.register_script(_SEM_COUNT_LUA)

    async def acquire(self, holder_id: str) -> Lease | None:
        """Take a slot for ``holder_id``; None if all ``limit`` slots are held."""
        if not holder_id:
            raise ValueError("holder_id must not be empty")
        expiry = await self._acquire(
            keys=[self.key],
            args=[holder_id, self.limit, repr(self.lease_s), _EXPIRY_MARGIN_MS],
        )
        if expiry is None:
            return None
        return Lease(key=self.key, holder_id=holder_id, expires_at=float(expiry))

    async def renew(self, lease: Lease) -> bool:
        """Extend ``lease`` to ``lease_s`` from now (updates ``lease.expires_at``).

        False if the lease was lost (it expired, or was released): the slot may now be
        someone else's, so the holder must stop what the slot allowed.
        """
        self._check_lease(lease)
        expiry = await self._renew(
            keys=[self.key], args=[lease.holder_id, repr(self.lease_s), _EXPIRY_MARGIN_MS]
        )
        if expiry is None:
            return False
        lease.expires_at = float(expiry)
        return True

    async def release(self, lease: Lease) -> bool:
        """Free ``lease``'s slot; False if it had already expired or been released."""
        self._check_lease(lease)
        return bool(await self._release(keys=[self.key], args=[lease.holder_id]))

    async def count(self) -> int:
        """Number of live (unexpired) leases."""
        return int(await self._count(keys=[self.key]))

    def _check_lease(self, lease: Lease) -> None:
        if lease.key != self.key:
            raise ValueError(f"lease is for key {lease.key!r}, not {self.key!r}")

    def __repr__(self) -> str:
        return f"<LeasedSemaphore {self.key!r} limit={self.limit} lease_s={self.lease_s}>"
