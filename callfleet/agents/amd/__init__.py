"""Answering-machine detection: person, voicemail or IVR, from cadence, beep and words."""

from callfleet.agents.amd.classifier import (
    TranscriptVerdict,
    VoiceMailDetector,
    classify_transcript,
    normalize,
)
from callfleet.agents.amd.detector import AMDEvent, AMDResult, AnsweringMachineDetector

__all__ = [
    "AMDEvent",
    "AMDResult",
    "AnsweringMachineDetector",
    "TranscriptVerdict",
    "VoiceMailDetector",
    "classify_transcript",
    "normalize",
]
