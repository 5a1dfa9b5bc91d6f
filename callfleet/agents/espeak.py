"""Text to speech with Debian's espeak-ng: the fast offline fallback voice.

Used by the live-call ``say`` command until the voice pipeline's TTS providers land.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from callfleet.media.frame import PCM16
from callfleet.media.wav import read_wav

MAX_TEXT_CHARS = 2000
#: How long synthesis may take before it counts as failed (s).
TIMEOUT_S = 20.0


class TtsError(RuntimeError):
    pass


async def synthesize(
    text: str, *, voice: str = "en-us", words_per_minute: int = 165
) -> tuple[PCM16, int]:
    """``text`` spoken by espeak-ng: int16 samples and their rate (22050 Hz)."""
    text = text.strip()
    if not text:
        raise ValueError("text to say is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text to say has {len(text)} characters; at most {MAX_TEXT_CHARS}")
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise TtsError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory(prefix="callfleet-tts-") as tmp:
        out = Path(tmp) / "say.wav"
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-v",
            voice,
            "-s",
            str(words_per_minute),
            "-w",
            str(out),
            "--",
            text,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TtsError(f"espeak-ng took longer than {TIMEOUT_S} s") from None
        if proc.returncode != 0:
            raise TtsError(f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace')}")
        return read_wav(out)
