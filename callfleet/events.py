"""A minimal event emitter (as in LiveKit's ``rtc.EventEmitter``) run on the asyncio loop;
used by calls and agent sessions."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class EventEmitter:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Register ``handler`` for ``event``; usable as a decorator. Coroutine handlers
        run as tasks; exceptions are logged, never swallowed silently."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers.setdefault(event, []).append(fn)
            return fn

        return register(handler) if handler is not None else register

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        if handler in self._handlers.get(event, []):
            self._handlers[event].remove(handler)

    def emit(self, event: str, *args: Any) -> None:
        for fn in list(self._handlers.get(event, [])):
            try:
                result = fn(*args)
            except Exception:
                log.exception("handler for %s event failed", event)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event handler task failed", exc_info=task.exception())
