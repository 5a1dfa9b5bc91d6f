"""The PJSUA2 library on its own thread.

PJSUA2 is not asyncio-aware and its objects must be used from threads it knows. The
engine owns one ``pj.Endpoint`` on a dedicated thread that alternates between
``libHandleEvents`` (SIP timers and sockets) and a queue of jobs submitted from the
event loop. Every PJSUA2 call and every SIP callback therefore happens on that one
thread, so Python-side state touched by callbacks needs no locks; results and events
hop back to the asyncio loop with ``call_soon_threadsafe``. The loop never blocks on
PJSIP. Media callbacks (``AudioMediaPort``) run on PJMEDIA's clock thread instead and
only touch thread-safe buffers.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import queue
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import pjsua2 as pj

from callfleet.sip.errors import SipError

log = logging.getLogger(__name__)
pjsip_log = logging.getLogger("callfleet.sip.pjsip")

T = TypeVar("T")

#: How long one ``libHandleEvents`` may wait when nothing else wakes it. With a waker
#: (a UDP transport to ping) the engine sleeps until SIP traffic, a PJSIP timer or a
#: job arrives; without one it polls the job queue this often.
POLL_MS_WITH_WAKER = 200
POLL_MS_WITHOUT_WAKER = 5
#: RFC 5626 keep-alive: PJSIP drops a datagram of only CRLFs without parsing it, which
#: makes it a free way to interrupt the engine's poll.
WAKE_DATAGRAM = b"\r\n\r\n"

_PJ_LEVELS = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}


class _LogWriter(pj.LogWriter):
    """Forwards PJSIP's log lines into Python logging."""

    def write(self, entry: Any) -> None:
        pjsip_log.log(_PJ_LEVELS.get(entry.level, logging.DEBUG), "%s", entry.msg.rstrip())


def binding_max_calls() -> int:
    """``PJSUA_MAX_CALLS`` of the loaded PJSIP build, read from the library itself
    (``pjsua_call_get_max_count`` returns the configured limit, already cut to the
    compile-time maximum). Only meaningful after ``libInit``."""
    return int(_library().pjsua_call_get_max_count())


@functools.cache
def _library() -> ctypes.CDLL:
    """The loaded PJSIP build, for the few C functions the SWIG binding does not wrap."""
    lib = ctypes.CDLL(pj.pjsua2._pjsua2.__file__)
    lib.pjsua_call_get_max_count.restype = ctypes.c_uint
    lib.pjsua_call_get_count.restype = ctypes.c_uint
    lib.pjsip_tsx_set_timers.argtypes = [ctypes.c_uint] * 4
    lib.pj_log_set_level.argtypes = [ctypes.c_int]
    return lib


def set_transaction_timeout(timeout_s: float) -> None:
    """PJSIP's transaction timeout (RFC 3261 Timer B/F, 64*T1 = 32 s by default): how long
    an INVITE that got no response at all keeps its call slot before failing with 408."""
    _library().pjsip_tsx_set_timers(0, 0, 0, int(timeout_s * 1000))  # 0 keeps T1, T2, T4


def pjsua_call_count() -> int:
    """Call slots PJSUA has in use right now (ended calls free theirs shortly after)."""
    return int(_library().pjsua_call_get_count())


def destroy_swig(obj: Any) -> None:
    """Run a PJSUA2 object's C++ destructor now, on this thread. The SWIG delete wrapper
    disowns the proxy, so the later garbage collection of the Python object is a no-op."""
    if obj.thisown:
        type(obj).__swig_destroy__(obj)
    obj.destroyed = True


def pj_error(message: str, exc: BaseException) -> SipError:
    """A ``SipError`` carrying PJSIP's own reason and status."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or str(exc)
    return SipError(f"{message}: {reason}", status=status)


class PjEngine:
    """Runs ``setup`` (creating the library) and then jobs on one thread."""

    def __init__(self, name: str = "pjsip") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._setup_error: BaseException | None = None
        self._stopped = threading.Event()
        self.ep: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Called on the engine thread after each poll (housekeeping: reap ended calls).
        self.after_poll: list[Callable[[], None]] = []
        self._waker: socket.socket | None = None
        self._wake_address: tuple[str, int] | None = None
        self._poll_ms = POLL_MS_WITHOUT_WAKER
        self._asleep = False
        self._relay: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._relay_scheduled = False

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        setup: Callable[[Any], None],
        teardown: Callable[[Any], None],
        timeout_s: float = 10.0,
    ) -> None:
        """Start the thread; ``setup(ep)`` runs first on it (libCreate/libInit/transports).
        Blocks until setup is done: call it from an executor, not the loop."""
        self.loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(setup, teardown), name=self._name, daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise SipError(f"PJSIP did not start within {timeout_s} s")
        if self._setup_error is not None:
            raise self._setup_error

    def _run(self, setup: Callable[[Any], None], teardown: Callable[[Any], None]) -> None:
        ep = pj.Endpoint()
        self.ep = ep
        try:
            # pjlib logs its start-up to stdout before any log config applies: quiet it
            # now; setup() installs the real log writer and level.
            _library().pj_log_set_level(0)
            ep.libCreate()
            setup(ep)
        except BaseException as e:  # reported to start(), which raises it on the caller
            self._setup_error = e if isinstance(e, SipError) else pj_error("PJSIP setup", e)
            self._ready.set()
            self._safe_destroy(ep)
            return
        self._ready.set()
        try:
            while True:
                self._asleep = True
                if not self._drain():  # a job submitted before _asleep was set runs here
                    break
                ep.libHandleEvents(self._poll_ms)
                self._asleep = False
                if not self._drain():
                    break
                for hook in self.after_poll:
                    hook()
        finally:
            try:
                teardown(ep)
            except Exception:
                log.exception("PJSIP teardown failed")
            self._safe_destroy(ep)
            self._stopped.set()

    def _drain(self) -> bool:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return True
            if job is None:
                return False
            job()

    @staticmethod
    def _safe_destroy(ep: Any) -> None:
        try:
            ep.libDestroy()
        except Exception:
            log.exception("libDestroy failed")

    def set_waker(self, host: str, port: int) -> None:
        """Wake the engine by a keep-alive datagram to its own UDP transport at
        ``host:port``, so it can sleep long between events (called by setup)."""
        self._wake_address = ("127.0.0.1" if host in ("0.0.0.0", "") else host, port)
        self._waker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._waker.setblocking(False)
        self._poll_ms = POLL_MS_WITH_WAKER

    def _wake(self) -> None:
        if self._asleep and self._waker is not None and self._wake_address is not None:
            try:
                self._waker.sendto(WAKE_DATAGRAM, self._wake_address)
            except OSError:
                log.warning("could not wake the PJSIP thread; it wakes within %d ms", self._poll_ms)

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the engine thread; errors are logged."""

        def job() -> None:
            try:
                fn()
            except Exception:
                log.exception("PJSIP job failed")

        self._jobs.put(job)
        self._wake()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn`` on the engine thread; its result or exception lands in the future."""
        loop = self.loop
        assert loop is not None, "engine not started"
        fut: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result = fn()
            except BaseException as e:
                loop.call_soon_threadsafe(_set_exception, fut, e)
            else:
                loop.call_soon_threadsafe(_set_result, fut, result)

        if self._stopped.is_set():
            fut.set_exception(SipError("SIP endpoint is stopped"))
        else:
            self._jobs.put(job)
            self._wake()
        return fut

    def to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """From the engine or the media clock thread: run ``fn(*args)`` on the asyncio
        loop, in order. Calls are batched: one loop wake-up carries everything posted
        until the loop gets to it (all calls' frames of a clock tick, typically)."""
        self._relay.append((fn, args))
        if not self._relay_scheduled:
            self._relay_scheduled = True
            loop = self.loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._run_relay)

    def _run_relay(self) -> None:
        # Reset the flag before draining: a post racing with the drain either lands in
        # this drain or schedules the next one.
        self._relay_scheduled = False
        relay = self._relay
        while relay:
            fn, args = relay.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("callback %s from the PJSIP side failed", getattr(fn, "__name__", fn))

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the thread to tear down and wait for it (blocking: use an executor)."""
        if self._thread is None:
            return
        self._jobs.put(None)
        self._wake()
        self._thread.join(timeout_s)
        if self._waker is not None:
            self._waker.close()
        if self._thread.is_alive():
            log.error("PJSIP thread did not stop within %s s", timeout_s)


def _set_result(fut: asyncio.Future[T], value: T) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
