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

    ``ivr`` makes the phone a phone menu (IVR) instead: a tree of nodes, each either
    ``{"prompt": WAV, "options": {key: node | "root"}}`` (the prompt plays; a key with an
    option goes there, ``"root"`` back to the top; any other key replays the prompt;
    a key cuts the prompt short) or ``{"human": WAV}`` (a person answers: the WAV plays
    and the menu is over). Keys arrive as DTMF (RFC 4733 or SIP INFO). A prompt replays
    ``ivr_repeat_s`` after it played if no key came, ``ivr_max_repeats`` times, then the
    phone hangs up. Events: ``ivr_prompt`` (node, path, repeat), ``ivr_digit`` (digit,
    node, accepted), ``ivr_human`` (path), ``ivr_gave_up``.
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
    #: A phone menu tree (see above); ``None``: no menu.
    ivr: dict[str, Any] | None = None
    #: Quiet after a prompt before it plays again (s).
    ivr_repeat_s: float = 3.0
    #: Replays of one prompt without a key before the phone hangs up.
    ivr_max_repeats: int = 3

    def __post_init__(self) -> None:
        if self.answer not in ("answer", "reject", "ignore"):
            raise ValueError(f"script answer must be answer, reject or ignore: {self.answer!r}")
        if self.ivr is not None:
            check_ivr_node(self.ivr, "ivr")

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


def check_ivr_node(node: Any, where: str) -> None:
    """Raise ``ValueError`` naming the first malformed node of an IVR tree."""
    if not isinstance(node, dict):
        raise ValueError(f"{where} must be an object, got {node!r}")
    if "human" in node:
        if set(node) != {"human"} or not isinstance(node["human"], str):
            raise ValueError(f"{where} must be exactly {{'human': WAV path}}, got {node!r}")
        return
    if not isinstance(node.get("prompt"), str):
        raise ValueError(f"{where} has no 'prompt' (a WAV path): {node!r}")
    unknown = set(node) - {"prompt", "options"}
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
    for key, child in node.get("options", {}).items():
        if len(key) != 1 or key not in "0123456789*#ABCD":
            raise ValueError(f"{where}.options key {key!r} is not one DTMF key")
        if child != "root":
            check_ivr_node(child, f"{where}.options[{key}]")
