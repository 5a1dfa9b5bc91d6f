"""Fallback adapters: an LLM, STT or TTS made of several providers tried in order.

``FallbackLLM``, ``FallbackSTT`` and ``FallbackTTS`` implement the protocol of what
they wrap (label ``fallback(a,b)``). Each request goes to the first available provider;
one that fails (raises ``APIError`` or any other exception except cancellation) before
producing any output is marked unavailable for ``temporary_disable_s`` and the next one
is tried within the same request. A failure after some output (mid-stream) is re-raised
as it is: the output already went to the caller and is not replayed, so the session
decides what to do; it still counts as a failure. After
``permanent_disable_after_attempts`` consecutive failures a provider is disabled for the
adapter's lifetime. A temporarily disabled provider is tried again once its period has
passed; a success resets its count. When no provider is left to try, the request fails
with ``APIError("all providers failed: ...", retryable=False)`` naming each provider's
last error.

A streamed request that the caller stops after some output (an interruption) counts as
a success. ``on_availability_changed(label, available)`` is called with the provider's
label and False when a healthy provider fails, and with True when a provider that had
failed succeeds again (not merely when its period ends: a provider is back once it
works). Time comes from ``clock`` (``time.monotonic`` unless given, in seconds), so that
tests can move it.

STT: ``recognize`` falls back as above. ``capabilities`` and ``sample_rate`` are the
first provider's; ``stream()`` opens the stream of the first available provider whose
capabilities say it streams (falling back when opening fails). An error while the
stream runs is recorded and re-raised, without switching (the audio already pushed is
not kept for a replay).

TTS: ``synthesize`` falls back until the first frame. ``capabilities`` and
``sample_rate`` are the first provider's; frames come at the rate of the provider that
made them (each ``AudioFrame`` carries its rate), so consumers resample by the frame.

The adapters own their providers: ``aclose()`` closes them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from callfleet.agents.chat import ChatChunk, ChatContext
from callfleet.agents.errors import APIError
from callfleet.agents.providers.base import (
    LLM,
    STT,
    TTS,
    RecognizeStream,
    SpeechEvent,
    STTCapabilities,
    ToolChoice,
    TTSCapabilities,
)
from callfleet.agents.tools import FunctionTool
from callfleet.media.frame import PCM16, AudioFrame

log = logging.getLogger(__name__)

#: Default time a failed provider is skipped for (s).
DEFAULT_TEMPORARY_DISABLE_S = 60.0
#: Default number of consecutive failures after which a provider is never tried again.
DEFAULT_PERMANENT_DISABLE_AFTER_ATTEMPTS = 3

AvailabilityCallback = Callable[[str, bool], None]
"""``on_availability_changed(provider_label, available)``."""


class _Labelled(Protocol):
    label: str

    async def aclose(self) -> None: ...


P = TypeVar("P", bound=_Labelled)
T = TypeVar("T")


@dataclass(frozen=True)
class ProviderStatus:
    """Where one provider of a fallback adapter stands."""

    label: str
    #: The next request would try it.
    available: bool
    permanently_disabled: bool
    consecutive_failures: int
    #: Clock time (s) before which it is skipped; None when it is not disabled for a time.
    disabled_until: float | None
    last_error: str | None


@dataclass
class _Health:
    label: str
    failures: int = 0
    disabled_until: float | None = None
    permanent: bool = False
    #: False from a failure until the next success (drives the availability callback).
    healthy: bool = True
    last_error: Exception | None = None


@dataclass(frozen=True)
class _Options:
    temporary_disable_s: float
    permanent_disable_after_attempts: int | None


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


async def _close_iterator(iterator: object) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:
        log.warning("closing a provider's stream failed", exc_info=True)


class _Pool(Generic[P]):
    """The providers, their health, and the fallback loop the adapters share."""

    def __init__(
        self,
        kind: str,
        providers: Sequence[P],
        *,
        temporary_disable_s: float,
        permanent_disable_after_attempts: int | None,
        clock: Callable[[], float],
        on_availability_changed: AvailabilityCallback | None,
    ) -> None:
        if not providers:
            raise ValueError(f"{kind} needs at least one provider")
        if temporary_disable_s < 0:
            raise ValueError(f"temporary_disable_s must be >= 0, got {temporary_disable_s}")
        if permanent_disable_after_attempts is not None and permanent_disable_after_attempts < 1:
            raise ValueError(
                "permanent_disable_after_attempts must be >= 1 or None, got "
                f"{permanent_disable_after_attempts}"
            )
        self.providers = list(providers)
        self.label = f"fallback({','.join(p.label for p in self.providers)})"
        self._opts = _Options(temporary_disable_s, permanent_disable_after_attempts)
        self._clock = clock
        self._on_availability_changed = on_availability_changed
        self._health = [_Health(p.label) for p in self.providers]
        self._closed = False

    # -- health ------------------------------------------------------------------------

    def _eligible(self, index: int) -> bool:
        health = self._health[index]
        if health.permanent:
            return False
        if health.disabled_until is not None:
            if self._clock() < health.disabled_until:
                return False
            health.disabled_until = None
            log.info("%s: trying provider %s again", self.label, health.label)
        return True

    def candidates(self, indices: Sequence[int] | None = None) -> Iterator[tuple[int, P]]:
        """The providers to try, in order (eligibility is checked as each is reached)."""
        for index in range(len(self.providers)) if indices is None else indices:
            if self._eligible(index):
                yield index, self.providers[index]

    def failed(self, index: int, error: Exception, *, after_output: bool = False) -> None:
        health = self._health[index]
        health.failures += 1
        health.last_error = error
        limit = self._opts.permanent_disable_after_attempts
        where = "after producing output" if after_output else "before producing output"
        unexpected = not isinstance(error, APIError)  # a bug, not an outage: keep the traceback
        if limit is not None and health.failures >= limit:
            health.permanent, health.disabled_until = True, None
            log.error(
                "%s: provider %s failed %s (%s); %d failures in a row, disabled permanently",
                self.label,
                health.label,
                where,
                _describe(error),
                health.failures,
                exc_info=error if unexpected else None,
            )
        else:
            health.disabled_until = self._clock() + self._opts.temporary_disable_s
            log.warning(
                "%s: provider %s failed %s (%s); unavailable for %.1f s",
                self.label,
                health.label,
                where,
                _describe(error),
                self._opts.temporary_disable_s,
                exc_info=error if unexpected else None,
            )
        if health.healthy:
            health.healthy = False
            self._notify(health.label, False)

    def succeeded(self, index: int) -> None:
        health = self._health[index]
        health.failures, health.disabled_until = 0, None
        if not health.healthy:
            health.healthy = True
            log.info("%s: provider %s works again", self.label, health.label)
            self._notify(health.label, True)

    def _notify(self, label: str, available: bool) -> None:
        if self._on_availability_changed is None:
            return
        try:
            self._on_availability_changed(label, available)
        except Exception:
            log.exception(
                "%s: on_availability_changed(%s, %s) failed", self.label, label, available
            )

    def all_failed(self, indices: Sequence[int] | None = None) -> APIError:
        """The error for "no provider left": each provider's last error."""
        parts: list[str] = []
        for index in range(len(self.providers)) if indices is None else indices:
            health = self._health[index]
            text = _describe(health.last_error) if health.last_error else "not tried"
            suffix = " (disabled permanently)" if health.permanent else ""
            parts.append(f"{health.label}: {text}{suffix}")
        return APIError(f"all providers failed: {'; '.join(parts)}", retryable=False)

    def status(self) -> list[ProviderStatus]:
        now = self._clock()
        return [
            ProviderStatus(
                label=h.label,
                available=not h.permanent and (h.disabled_until is None or now >= h.disabled_until),
                permanently_disabled=h.permanent,
                consecutive_failures=h.failures,
                disabled_until=h.disabled_until,
                last_error=_describe(h.last_error) if h.last_error else None,
            )
            for h in self._health
        ]

    # -- requests ----------------------------------------------------------------------

    async def call(self, run: Callable[[P], Awaitable[T]]) -> T:
        """``run`` on each provider in turn until one returns."""
        last: Exception | None = None
        for index, provider in self.candidates():
            try:
                result = await run(provider)
            except Exception as e:
                self.failed(index, e)
                last = e
                continue
            self.succeeded(index)
            return result
        raise self.all_failed() from last

    async def stream(self, start: Callable[[P], AsyncIterator[T]]) -> AsyncIterator[T]:
        """The items of ``start(provider)``, from the first provider that produces any."""
        last: Exception | None = None
        for index, provider in self.candidates():
            produced = finished = False
            error: Exception | None = None
            try:
                iterator = start(provider)
            except Exception as e:
                self.failed(index, e)
                last = e
                continue
            try:
                while True:
                    try:
                        item = await anext(iterator)
                    except StopAsyncIteration:
                        finished = True
                        break
                    except Exception as e:
                        error = last = e
                        self.failed(index, e, after_output=produced)
                        if produced:
                            raise
                        break
                    produced = True
                    yield item
            finally:
                await _close_iterator(iterator)
                if error is None and (finished or produced):
                    self.succeeded(index)  # an early stop by the caller after output counts
            if error is None:
                return
        raise self.all_failed() from last

    async def watch(self, index: int, iterator: AsyncIterator[T]) -> AsyncIterator[T]:
        """The items of one provider's stream, recording how it ends (no fallback)."""
        produced = False
        try:
            while True:
                try:
                    item = await anext(iterator)
                except StopAsyncIteration:
                    self.succeeded(index)
                    return
                except Exception as e:
                    self.failed(index, e, after_output=produced)
                    raise
                produced = True
                yield item
        finally:
            await _close_iterator(iterator)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        results = await asyncio.gather(
            *(p.aclose() for p in self.providers), return_exceptions=True
        )
        for provider, result in zip(self.providers, results, strict=True):
            if isinstance(result, Exception):
                log.error("%s: closing provider %s failed: %s", self.label, provider.label, result)


# -- the adapters ----------------------------------------------------------------------


class _Adapter(Generic[P]):
    """Options shared by the three adapters.

    Args:
        providers: tried in this order; at least one.
        temporary_disable_s: how long a provider that failed is skipped, in seconds
            (default 60).
        permanent_disable_after_attempts: consecutive failures after which a provider
            is never tried again (default 3; None: never disable permanently).
        clock: the time source, in seconds (default ``time.monotonic``).
        on_availability_changed: called with ``(provider_label, available)`` when a
            provider fails while healthy or works again after failing (default none).
    """

    def __init__(
        self,
        providers: Sequence[P],
        *,
        temporary_disable_s: float = DEFAULT_TEMPORARY_DISABLE_S,
        permanent_disable_after_attempts: int | None = DEFAULT_PERMANENT_DISABLE_AFTER_ATTEMPTS,
        clock: Callable[[], float] = time.monotonic,
        on_availability_changed: AvailabilityCallback | None = None,
    ) -> None:
        self._pool = _Pool(
            type(self).__name__,
            providers,
            temporary_disable_s=temporary_disable_s,
            permanent_disable_after_attempts=permanent_disable_after_attempts,
            clock=clock,
            on_availability_changed=on_availability_changed,
        )
        self.label = self._pool.label
        first = self._pool.providers[0]
        # STT and TTS adapters present their first provider's audio properties.
        for attribute in ("capabilities", "sample_rate"):
            if hasattr(first, attribute):
                setattr(self, attribute, getattr(first, attribute))

    @property
    def providers(self) -> list[P]:
        return list(self._pool.providers)

    def status(self) -> list[ProviderStatus]:
        """Each provider's availability, failure count and last error, in order."""
        return self._pool.status()

    async def aclose(self) -> None:
        """Close every provider (once)."""
        await self._pool.aclose()


class FallbackLLM(_Adapter[LLM]):
    """An ``LLM`` that falls back to the next provider until the first chunk."""

    def chat(
        self,
        *,
        chat_ctx: ChatContext,
        tools: list[FunctionTool] | None = None,
        tool_choice: ToolChoice = "auto",
    ) -> AsyncIterator[ChatChunk]:
        return self._pool.stream(
            lambda p: p.chat(chat_ctx=chat_ctx, tools=tools, tool_choice=tool_choice)
        )


class FallbackTTS(_Adapter[TTS]):
    """A ``TTS`` that falls back to the next provider until the first frame; frames
    come at their provider's rate, ``sample_rate`` is the first provider's."""

    capabilities: TTSCapabilities
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[AudioFrame]:
        return self._pool.stream(lambda p: p.synthesize(text))


class FallbackSTT(_Adapter[STT]):
    """An ``STT`` whose ``recognize`` falls back; ``stream()`` opens the first available
    streaming provider's stream. ``capabilities`` and ``sample_rate`` are the first
    provider's."""

    capabilities: STTCapabilities
    sample_rate: int

    async def recognize(
        self, audio: PCM16, sample_rate: int, *, language: str | None = None
    ) -> SpeechEvent:
        return await self._pool.call(lambda p: p.recognize(audio, sample_rate, language=language))

    def stream(self, *, language: str | None = None) -> RecognizeStream:
        streaming = [i for i, p in enumerate(self._pool.providers) if p.capabilities.streaming]
        if not streaming:
            raise APIError(f"no provider of {self.label} streams", retryable=False)
        last: Exception | None = None
        for index, provider in self._pool.candidates(streaming):
            try:
                inner = provider.stream(language=language)
            except Exception as e:
                self._pool.failed(index, e)
                last = e
                continue
            return _WatchedStream(self._pool, index, inner)
        raise self._pool.all_failed(streaming) from last


class _WatchedStream:
    """A provider's ``RecognizeStream`` whose end (success or error) is recorded."""

    def __init__(self, pool: _Pool[STT], index: int, inner: RecognizeStream) -> None:
        self._pool = pool
        self._index = index
        self._inner = inner

    def push_frame(self, frame: AudioFrame) -> None:
        self._inner.push_frame(frame)

    def flush(self) -> None:
        self._inner.flush()

    def end_input(self) -> None:
        self._inner.end_input()

    def __aiter__(self) -> AsyncIterator[SpeechEvent]:
        return self._pool.watch(self._index, aiter(self._inner))

    async def aclose(self) -> None:
        await self._inner.aclose()
