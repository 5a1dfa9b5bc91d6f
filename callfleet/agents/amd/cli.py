"""``callfleet amd FILE.wav ...``: answering-machine detection on recorded files.

Each file is the callee side from the moment of answer, at any sample rate. It is fed to an
``AnsweringMachineDetector`` in 20 ms frames as if streaming, with the STT treated as
instant (``settle()`` after each frame), so times are times in the file: ``decision_ms`` of
the last decision or revision, ``label_ms`` of the first decision giving the final label
(a silent start is ``unknown`` at 2.5 s, then ``human`` when the callee speaks: the latter),
``first_decision_ms`` of the very first; ``stt_ms`` reports what the transcriptions actually
cost. The models (Silero VAD, Whisper) are loaded once for all the files.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from callfleet.agents.amd.detector import AMDEvent, AnsweringMachineDetector
from callfleet.agents.providers.base import STT, VAD
from callfleet.media.frame import AudioFrame, samples_per_frame
from callfleet.media.wav import read_wav


def load_models(*, use_stt: bool = True) -> tuple[VAD, STT | None]:
    """The VAD (Silero at 8 kHz) and the STT (Whisper base, ``None`` if unavailable)."""
    from callfleet.agents.providers.silero import SileroVAD

    vad = SileroVAD(sample_rate=8000)
    stt: STT | None = None
    if use_stt:
        try:
            from callfleet.agents.providers.whisper import WhisperSTT

            stt = WhisperSTT()
        except Exception as e:
            print(f"callfleet amd: no STT ({e}); using cadence and beep only", file=sys.stderr)
    return vad, stt


async def analyze_file(path: str, vad: VAD, stt: STT | None, **options: Any) -> dict[str, Any]:
    """The detector's verdict on one file, as the JSON object the CLI prints; ``options``
    are ``AnsweringMachineDetector`` keyword options (thresholds)."""
    samples, rate = read_wav(path)
    detector = AnsweringMachineDetector(vad, stt, **options)
    step = samples_per_frame(rate)
    try:
        for start in range(0, len(samples), step):
            frame = AudioFrame(samples[start : start + step], rate, timestamp_s=start / rate)
            await detector.push_frame(frame)
            await detector.settle()
    finally:
        await detector.aclose()
    final = detector.result
    beep = detector.beep
    decisions = [r for r in detector.results if r.event is not AMDEvent.MESSAGE_START]
    first = decisions[0] if decisions else None
    label_ms = None  # when the final label was first said (e.g. "unknown" then "human")
    for r in reversed(decisions):
        if final is None or r.label != final.label:
            break
        label_ms = r.decision_ms
    return {
        "file": path,
        "label": final.label if final else "unknown",
        "decision_ms": final.decision_ms if final else None,
        "beep_ms": final.beep_ms if final else None,
        "confidence": final.confidence if final else 0.0,
        "reason": final.reason if final else "no decision",
        "revised": bool(final and final.revised),
        "label_ms": label_ms,
        "first_label": first.label if first else None,
        "first_decision_ms": first.decision_ms if first else None,
        "beep_end_ms": beep.end_ms if beep else None,
        "beep_hz": list(beep.freqs_hz) if beep else None,
        "message_start_ms": detector.message_start_ms,
        "transcript": final.transcript if final else "",
        "duration_ms": round(len(samples) * 1000 / rate, 1),
        "stt_ms": round(detector.stt_ms, 1),
    }


async def _run(files: list[str], as_json: bool) -> int:
    status = 0
    vad, stt = load_models()
    for path in files:
        try:
            out = await analyze_file(path, vad, stt)
        except (OSError, ValueError) as e:
            print(f"callfleet amd: cannot read {path}: {e}", file=sys.stderr)
            status = 2
            continue
        if as_json:
            print(json.dumps(out), flush=True)
        else:
            beep = "" if out["beep_ms"] is None else f" beep at {out['beep_ms']:.0f} ms"
            when = "-" if out["decision_ms"] is None else f"{out['decision_ms']:.0f} ms"
            print(f"{path}: {out['label']} at {when}{beep} ({out['reason']})", flush=True)
    return status


def run_amd_cli(files: list[str], as_json: bool) -> int:
    """Analyses ``files`` in order, printing one line (a JSON object with ``as_json``) per
    file; returns 0, or 2 if any file could not be read (the others are still analysed)."""
    return asyncio.run(_run(files, as_json))
