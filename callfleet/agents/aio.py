"""Small asyncio helpers of the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Channel(Generic[T]):
    """An unbounded single-consumer stream: ``send`` from anywhere on the loop, ``close``
    to end it, ``async for`` to read it."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    def send(self, item: T) -> None:
        if self._closed:
            raise RuntimeError("channel is closed")
        self._items.append(item)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            while self._items:
                yield self._items.popleft()
            if self._closed:
                return
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None


async def cancel_and_wait(*tasks: asyncio.Task[object] | None, timeout_s: float = 5.0) -> None:
    """Cancel the tasks and wait (bounded) until they have finished."""
    live = [t for t in tasks if t is not None and not t.done()]
    for task in live:
        task.cancel()
    if live:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait(live, timeout=timeout_s)


async def once(item: T) -> AsyncIterator[T]:
    """A stream of one item (a whole text for a node that takes a text stream)."""
    yield item
