"""Thread pools for local model inference (Silero, faster-whisper, Piper).

Model calls are native code (onnxruntime, CTranslate2) that take from ~0.1 ms (one Silero
window) to ~1 s (a Whisper utterance) and release the GIL, so they run in threads while
the asyncio loop keeps serving RTP frames, SIP signalling and websockets. Every provider
shares this one pool, so the number of concurrent model jobs in a call-host process is
bounded however many calls it carries.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def default_max_workers() -> int:
    """Worker threads of the inference pool: ``max(2, os.cpu_count() - 1)``.

    One core is left to the event loop and the PJSIP media thread, which must never
    starve (a late frame is an audible gap); beyond the core count, native threads only
    contend. But at least two workers, so that on a one- or two-core host the short
    Silero jobs (a millisecond) of the other calls run beside a long Whisper or Piper job
    (hundreds of ms) instead of queueing behind it and delaying turn detection.
    """
    return max(2, (os.cpu_count() or 1) - 1)


_executor: ThreadPoolExecutor | None = None
_realtime: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def get_executor() -> ThreadPoolExecutor:
    """The process-wide inference pool, created on first use (no threads at import)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=default_max_workers(), thread_name_prefix="callfleet-inference"
            )
        return _executor


def get_realtime_executor() -> ThreadPoolExecutor:
    """One thread for the per-frame jobs (VAD windows, well under a millisecond each):
    they must never queue behind a Whisper or Piper job in the main pool, or turn
    taking, barge-in and answering-machine detection would lag by that job's length."""
    global _realtime
    with _executor_lock:
        if _realtime is None:
            _realtime = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callfleet-vad")
        return _realtime


async def run_realtime_inference(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Like ``run_inference``, on the per-frame lane (``get_realtime_executor``)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
    return await loop.run_in_executor(get_realtime_executor(), call)


async def run_inference(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` run in the inference pool; the loop stays free meanwhile.

    If the awaiting task is cancelled, the job still runs to its end in its thread (a
    native call cannot be interrupted); its result is dropped.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
    return await loop.run_in_executor(get_executor(), call)
