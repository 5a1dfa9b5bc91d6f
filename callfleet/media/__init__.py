"""Audio for calls: frames, playout, G.711, resampling, tones, WAV files, mixing, analysis.

Pure numpy on int16 mono blocks (plus PyAV for resampling); nothing here knows about SIP.
"""

from callfleet.media.analysis import (
    dominant_frequency_hz,
    goertzel_power,
    tone_energy_ratio,
    tone_present,
)
from callfleet.media.frame import FRAME_MS, PCM16, AudioFrame, samples_per_frame
from callfleet.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from callfleet.media.mix import SILENCE_DBFS, gain, interleave, mix, rms_dbfs
from callfleet.media.playout import PlayoutBuffer
from callfleet.media.resample import Resampler, resample
from callfleet.media.tones import (
    DTMF_FREQS,
    beep,
    dtmf_sequence,
    dtmf_tone,
    dual_tone,
    ringback,
    silence,
    sine,
    white_noise,
)
from callfleet.media.wav import WavWriter, read_wav, write_wav

__all__ = [
    "DTMF_FREQS",
    "FRAME_MS",
    "PCM16",
    "SILENCE_DBFS",
    "AudioFrame",
    "PlayoutBuffer",
    "Resampler",
    "WavWriter",
    "alaw_decode",
    "alaw_encode",
    "beep",
    "dominant_frequency_hz",
    "dtmf_sequence",
    "dtmf_tone",
    "dual_tone",
    "gain",
    "goertzel_power",
    "interleave",
    "mix",
    "read_wav",
    "resample",
    "ringback",
    "rms_dbfs",
    "samples_per_frame",
    "silence",
    "sine",
    "tone_energy_ratio",
    "tone_present",
    "ulaw_decode",
    "ulaw_encode",
    "white_noise",
    "write_wav",
]
