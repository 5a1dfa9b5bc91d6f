"""espeak-ng text to speech: real synthesis, and bad input refused with the reason."""

from __future__ import annotations

import pytest

from callfleet.agents.espeak import MAX_TEXT_CHARS, synthesize
from callfleet.media.mix import rms_dbfs

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_synthesizes_speech() -> None:
    samples, rate = await synthesize("Hello from callfleet.")
    assert rate == 22050
    assert 0.8 < len(samples) / rate < 4
    assert rms_dbfs(samples) > -35


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "text to say is empty"),
        ("   ", "text to say is empty"),
        ("x" * (MAX_TEXT_CHARS + 1), f"text to say has {MAX_TEXT_CHARS + 1} characters"),
    ],
)
async def test_bad_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await synthesize(text)
