"""Silero VAD: finds where speech starts and ends on a call, offline.

The Silero ONNX model (from the ``silero-vad`` package) is run with onnxruntime directly,
without torch, as ``silero_vad.utils_vad.OnnxWrapper`` does: each window of 256 samples
at 8 kHz or 512 at 16 kHz (32 ms) is fed with the last 32 / 64 samples of the previous
window in front of it (the "context") and the model's recurrent state, and gives the
probability that the window holds speech. A stream turns those probabilities into
START_OF_SPEECH / END_OF_SPEECH events with hysteresis and minimum durations, the way
LiveKit's Silero plugin does.

A stream's result depends only on the audio, never on how it was cut into frames:
resampling is streaming (``callfleet.media.resample``), windows are cut from the
resampled stream, and every duration is counted in samples.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from callfleet.agents.errors import APIError
from callfleet.agents.models import silero_vad_path
from callfleet.agents.options import NOT_GIVEN, replace_given
from callfleet.agents.providers.base import VADEvent, VADEventType
from callfleet.agents.providers.inference import run_realtime_inference
from callfleet.media.frame import PCM16, AudioFrame
from callfleet.media.resample import Resampler

logger = logging.getLogger(__name__)

PROVIDER = "silero"
#: Samples per model window, and of context prepended to it, by sample rate (Hz).
WINDOW_SAMPLES = {8000: 256, 16000: 512}
CONTEXT_SAMPLES = {8000: 32, 16000: 64}
#: Shape of the model's recurrent state (layers, batch, units).
_STATE_SHAPE = (2, 1, 128)
#: ``deactivation_threshold`` never defaults below this.
_MIN_DEACTIVATION = 0.01


Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class _VADOptions:
    sample_rate: int
    activation_threshold: float
    deactivation_threshold: float | None  # None: activation_threshold - 0.15
    min_speech_duration_s: float
    min_silence_duration_s: float
    prefix_padding_s: float
    max_buffered_speech_s: float

    @property
    def effective_deactivation(self) -> float:
        if self.deactivation_threshold is not None:
            return self.deactivation_threshold
        return max(_MIN_DEACTIVATION, self.activation_threshold - 0.15)

    def samples(self, duration_s: float) -> int:
        return round(duration_s * self.sample_rate)


class SileroVAD:
    """Voice activity detection with the Silero VAD ONNX model.

    Keyword-only options:

    - ``sample_rate``: the rate the model runs at, 8000 or 16000 Hz; frames of other
      rates are resampled to it. 8000 suits telephone audio. Default 16000.
    - ``activation_threshold``: speech probability (0..1) at or above which a window
      counts as speech while not speaking. Default 0.5.
    - ``deactivation_threshold``: while speaking, a window counts as speech at or above
      this probability (hysteresis). Default ``activation_threshold - 0.15`` (at least
      0.01).
    - ``min_speech_duration_s``: speech must last this long (s) before START_OF_SPEECH.
      Default 0.05.
    - ``min_silence_duration_s``: silence must last this long (s) after speech before
      END_OF_SPEECH. Default 0.4.
    - ``prefix_padding_s``: audio (s) kept before the start of speech in the END event's
      ``frames``. Default 0.3.
    - ``max_buffered_speech_s``: the longest utterance audio (s) an END event carries;
      the rest of a longer utterance is not kept. Default 60.
    - ``model_path``: the ONNX file. Default: ``silero_vad.onnx`` of the ``silero-vad``
      package.

    Durations are counted in whole 32 ms windows. One onnxruntime session (one thread)
    is made here and shared by all streams; each stream keeps its own model state.
    """

    label = "silero"

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        activation_threshold: float = 0.5,
        deactivation_threshold: float | None = None,
        min_speech_duration_s: float = 0.05,
        min_silence_duration_s: float = 0.4,
        prefix_padding_s: float = 0.3,
        max_buffered_speech_s: float = 60.0,
        model_path: str | Path | None = None,
    ) -> None:
        if sample_rate not in WINDOW_SAMPLES:
            raise ValueError(f"SileroVAD sample_rate must be 8000 or 16000 Hz, got {sample_rate!r}")
        self._opts = _VADOptions(
            sample_rate=sample_rate,
            activation_threshold=activation_threshold,
            deactivation_threshold=deactivation_threshold,
            min_speech_duration_s=min_speech_duration_s,
            min_silence_duration_s=min_silence_duration_s,
            prefix_padding_s=prefix_padding_s,
            max_buffered_speech_s=max_buffered_speech_s,
        )
        _check_options(self._opts)
        path = Path(model_path) if model_path is not None else silero_vad_path()
        try:
            import onnxruntime

            so = onnxruntime.SessionOptions()
            # One thread per job: a window is too small to split, and the parallelism is
            # across calls (the inference pool), not inside one window.
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=so, providers=["CPUExecutionProvider"]
            )
        except Exception as e:
            raise APIError(
                f"cannot load the Silero model {path}: {e}", provider=PROVIDER, retryable=False
            ) from e

    @property
    def sample_rate(self) -> int:
        """The rate the model runs at, and of the END event's frames (Hz)."""
        return self._opts.sample_rate

    @property
    def activation_threshold(self) -> float:
        return self._opts.activation_threshold

    @property
    def deactivation_threshold(self) -> float:
        return self._opts.effective_deactivation

    def update_options(
        self,
        *,
        activation_threshold: float = NOT_GIVEN,
        deactivation_threshold: float | None = NOT_GIVEN,
        min_speech_duration_s: float = NOT_GIVEN,
        min_silence_duration_s: float = NOT_GIVEN,
        prefix_padding_s: float = NOT_GIVEN,
        max_buffered_speech_s: float = NOT_GIVEN,
    ) -> None:
        """Changes only the options passed; open streams use them from their next window.
        (``sample_rate`` is fixed: a stream's model state belongs to its rate.)"""
        given: dict[str, Any] = {
            "activation_threshold": activation_threshold,
            "deactivation_threshold": deactivation_threshold,
            "min_speech_duration_s": min_speech_duration_s,
            "min_silence_duration_s": min_silence_duration_s,
            "prefix_padding_s": prefix_padding_s,
            "max_buffered_speech_s": max_buffered_speech_s,
        }
        opts = replace_given(self._opts, **given)
        _check_options(opts)
        self._opts = opts

    def stream(self, *, call_id: str | None = None) -> SileroVADStream:
        """A new detection stream (one per call leg) with its own model state;
        ``call_id`` goes into the stream's log lines."""
        return SileroVADStream(self, call_id=call_id)

    def _run_windows(
        self, windows: PCM16, state: Float32Array, context: Float32Array
    ) -> tuple[Float32Array, Float32Array, Float32Array]:
        """Speech probabilities of ``windows`` (n x window int16), run in order from
        ``state`` and ``context``; also returns the state and context after the last one.
        Pure (the caller commits the new state), so a cancelled push changes nothing."""
        rate = self._opts.sample_rate
        context_size = CONTEXT_SAMPLES[rate]
        sr = np.array(rate, dtype=np.int64)
        x = windows.astype(np.float32) / np.float32(32768.0)
        probs = np.empty(len(windows), dtype=np.float32)
        try:
            for i in range(len(windows)):
                model_input = np.concatenate([context, x[i : i + 1]], axis=1)
                out, state = self._session.run(
                    None, {"input": model_input, "state": state, "sr": sr}
                )
                probs[i] = out.reshape(-1)[0]
                context = model_input[:, -context_size:]
        except Exception as e:
            raise APIError(f"inference failed: {e}", provider=PROVIDER, retryable=False) from e
        return probs, state, np.ascontiguousarray(context)


class SileroVADStream:
    """Speech start/end events for one audio stream; see ``SileroVAD`` for the options.

    ``push_frame`` is serialized per stream (concurrent calls wait their turn). Stream
    time runs from the first sample pushed, counted at the VAD's rate.
    """

    def __init__(self, vad: SileroVAD, *, call_id: str | None = None) -> None:
        self._vad = vad
        self._call_id = call_id
        self._rate = vad.sample_rate
        self._window = WINDOW_SAMPLES[self._rate]
        self._lock = asyncio.Lock()
        self._closed = False
        # Input side: resampler for the current input rate, samples short of a window.
        self._resampler: Resampler | None = None
        self._pending: PCM16 = np.zeros(0, np.int16)
        # Model side.
        self._state: Float32Array = np.zeros(_STATE_SHAPE, np.float32)
        self._context: Float32Array = np.zeros((1, CONTEXT_SAMPLES[self._rate]), np.float32)
        self._probability = 0.0
        # Decision side; positions are VAD-rate sample indices in the stream.
        self._position = 0  # samples decided so far (end of the last window)
        self._speaking = False
        self._speech_run = 0  # consecutive speech samples
        self._silence_run = 0  # consecutive non-speech samples
        self._run_start = 0  # where the current speech run began
        self._utterance_start = 0  # first speech sample of the current utterance
        self._speech_end = 0  # end of the last speech window of the utterance
        # Audio of the utterance (with prefix padding) or, when not speaking, the padding.
        self._audio: list[PCM16] = []
        self._audio_len = 0
        self._audio_start = 0  # stream position of the first buffered sample
        self._overflow_logged = False

    @property
    def speaking(self) -> bool:
        """True between a START_OF_SPEECH event and its END_OF_SPEECH."""
        return self._speaking

    @property
    def probability(self) -> float:
        """Speech probability (0..1) of the most recent window; 0.0 before the first."""
        return self._probability

    @property
    def sample_rate(self) -> int:
        return self._rate

    async def push_frame(self, frame: AudioFrame) -> list[VADEvent]:
        """Feeds ``frame`` (any rate); returns the events decided by the windows it
        completed, in order. The windows of one push run as one job in the inference
        pool. If the push is cancelled, its audio is decided with the next push."""
        async with self._lock:
            if self._closed:
                raise RuntimeError("push_frame on a closed SileroVADStream")
            resampler = self._resampler
            head: PCM16 | None = None
            if resampler is None or resampler.from_rate != frame.sample_rate:
                # A new input rate: drain the old resampler, then start a new one.
                head = resampler.flush() if resampler is not None else None
                resampler = Resampler(frame.sample_rate, self._rate)
            samples = resampler.process(frame.samples)
            parts = [self._pending, samples] if head is None else [self._pending, head, samples]
            buffered = np.concatenate(parts)
            # Commit the input side first: if the push is cancelled while the model runs,
            # its samples wait in ``_pending`` and are decided by the next push.
            self._resampler, self._pending = resampler, buffered
            n = len(buffered) // self._window
            if n == 0:
                return []
            windows = buffered[: n * self._window].reshape(n, self._window)
            probs, state, context = await run_realtime_inference(
                self._vad._run_windows, windows, self._state, self._context
            )
            self._pending = buffered[n * self._window :].copy()
            self._state, self._context = state, context
            events: list[VADEvent] = []
            for window, prob in zip(windows, probs, strict=True):
                event = self._decide(window, float(prob), frame.captured_at)
                if event is not None:
                    events.append(event)
            return events

    async def aclose(self) -> None:
        """Ends the stream; idempotent. An utterance in progress gives no END event."""
        async with self._lock:
            self._closed = True
            self._audio, self._audio_len = [], 0
            self._resampler = None

    def _decide(self, window: PCM16, prob: float, captured_at: float | None) -> VADEvent | None:
        opts = self._vad._opts
        self._probability = prob
        start = self._position
        self._position += len(window)
        threshold = opts.effective_deactivation if self._speaking else opts.activation_threshold
        self._keep_audio(window, opts)
        if prob >= threshold:
            if self._speech_run == 0:
                self._run_start = start
            self._speech_run += len(window)
            self._silence_run = 0
            if self._speaking:
                self._speech_end = self._position
            elif self._speech_run >= opts.samples(opts.min_speech_duration_s):
                self._speaking = True
                self._utterance_start = self._run_start
                self._speech_end = self._position
                self._overflow_logged = False
                return VADEvent(
                    type=VADEventType.START_OF_SPEECH,
                    timestamp_s=self._position / self._rate,
                    speech_duration_s=self._speech_run / self._rate,
                    captured_at=captured_at,
                )
            return None
        self._speech_run = 0
        self._silence_run += len(window)
        if not self._speaking:
            self._trim_audio(opts.samples(opts.prefix_padding_s))
            return None
        if self._silence_run < opts.samples(opts.min_silence_duration_s):
            return None
        self._speaking = False
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)
        event = VADEvent(
            type=VADEventType.END_OF_SPEECH,
            timestamp_s=self._position / self._rate,
            speech_duration_s=(self._speech_end - self._utterance_start) / self._rate,
            silence_duration_s=self._silence_run / self._rate,
            frames=[AudioFrame(audio, self._rate, timestamp_s=self._audio_start / self._rate)],
            captured_at=captured_at,
        )
        if self._audio_start + self._audio_len == self._position:
            # The silence that ended the utterance pads the next one.
            self._audio, self._audio_len = [audio], len(audio)
            self._trim_audio(opts.samples(opts.prefix_padding_s))
        else:  # the utterance overflowed: its end was not kept
            self._audio, self._audio_len, self._audio_start = [], 0, self._position
        return event

    def _keep_audio(self, window: PCM16, opts: _VADOptions) -> None:
        limit = opts.samples(opts.max_buffered_speech_s)
        if self._audio_len + len(window) > limit:
            if not self._overflow_logged:
                logger.warning(
                    "call %s: utterance longer than max_buffered_speech_s=%.1f s: "
                    "the rest is not kept",
                    self._call_id,
                    opts.max_buffered_speech_s,
                    extra={"call_id": self._call_id},
                )
                self._overflow_logged = True
            return
        if self._audio_len == 0:
            self._audio_start = self._position - len(window)
        self._audio.append(window)
        self._audio_len += len(window)

    def _trim_audio(self, keep: int) -> None:
        """Keeps only the last ``keep`` samples of the buffered audio."""
        drop = self._audio_len - keep
        while drop > 0 and self._audio:
            first = self._audio[0]
            cut = min(len(first), drop)
            if cut == len(first):
                self._audio.pop(0)
            else:
                self._audio[0] = first[cut:]
            self._audio_len -= cut
            self._audio_start += cut
            drop -= cut


def _check_options(opts: _VADOptions) -> None:
    if not 0.0 < opts.activation_threshold <= 1.0:
        raise ValueError(
            "SileroVAD activation_threshold must be within (0, 1], "
            f"got {opts.activation_threshold!r}"
        )
    deactivation = opts.deactivation_threshold
    if deactivation is not None and not 0.0 < deactivation <= opts.activation_threshold:
        raise ValueError(
            "SileroVAD deactivation_threshold must be within (0, activation_threshold="
            f"{opts.activation_threshold}], got {deactivation!r}"
        )
    for name in ("min_speech_duration_s", "min_silence_duration_s", "prefix_padding_s"):
        value = getattr(opts, name)
        if not value >= 0.0:
            raise ValueError(f"SileroVAD {name} must be >= 0 s, got {value!r}")
    if not opts.max_buffered_speech_s > 0.0:
        raise ValueError(
            f"SileroVAD max_buffered_speech_s must be > 0 s, got {opts.max_buffered_speech_s!r}"
        )
