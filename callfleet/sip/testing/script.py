"""What the test phone does with each call: the script, as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class PhoneScript:
    """Behaviour of the test phone. Every field is optional.

    Inbound: ``answer`` is "answer", "reject" (with ``reject_code``) or "ignore" (let it
    ring). ``ring_s`` sends 180 and waits that long first; ``early_media_s`` sends 183
    and plays the media for that long before answering. Media on every call (inbound,
    dialled, or created by a transfer): ``tone_hz`` plays a continuous tone, ``play``
    plays WAV files in order, ``silent`` sends nothing. ``record_dir`` records what the
    phone hears, one mono WAV per call (``record_stereo``: both directions, stereo).
    ``dtmf`` sends digits ``dtmf_after_s`` after the answer. ``refer_code`` answers
    REFER (202 accepts). ``hangup_after_s`` hangs up.
    """

    answer: str = "answer"
    reject_code: int = 486
    ring_s: float = 0.0
    early_media_s: float = 0.0
    tone_hz: float | None = None
    tone_dbfs: float = -12.0
    play: list[str] = field(default_factory=list)
    silent: bool = False
    record_dir: str | None = None
    #: Record both directions in one stereo WAV (left: what the phone hears, right:
    #: what it plays), so the two sides share one timeline.
    record_stereo: bool = False
    dtmf: str | None = None
    dtmf_method: str = "rfc4733"
    dtmf_after_s: float = 0.5
    refer_code: int = 202
    hangup_after_s: float | None = None
    #: Per dialled number (the Request-URI user, e.g. "+15550100"): fields that replace
    #: the ones above for calls to that number — a simulated phone network in one phone.
    by_callee: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.answer not in ("answer", "reject", "ignore"):
            raise ValueError(f"script answer must be answer, reject or ignore: {self.answer!r}")

    def for_callee(self, callee: str | None) -> PhoneScript:
        """The script for a call to ``callee``: this one, with its overrides applied."""
        overrides = self.by_callee.get(callee or "")
        if not overrides:
            return self
        return PhoneScript(**{**asdict(self), **overrides, "by_callee": {}})

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PhoneScript:
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        for callee, overrides in data.get("by_callee", {}).items():
            unknown |= {f"by_callee[{callee}].{k}" for k in set(overrides) - known}
        if unknown:
            raise ValueError(f"unknown test phone script keys: {sorted(unknown)}")
        return cls(**data)
