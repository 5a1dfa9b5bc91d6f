"""A labelled development corpus for answering-machine detection, synthesised offline.

``generate(out_dir, n_per_class, seed, templates="dev")`` writes ``n_per_class`` WAV
files (8 kHz, the callee side from the moment of answer) for each of ``human``,
``voicemail`` and ``ivr``, and
``labels.jsonl`` with one line per file: ``file``, ``label``, ``kind`` (the sub-case),
``beep_ms`` (true beep start, ``null`` if none), ``speech_end_ms``, ``text``, ``voice``,
``speed``, ``snr_db``, ``codec``.

Two template sets: ``dev`` (below and ``dev_greetings``; the detector was tuned on these)
and ``heldout`` (``heldout_greetings``, written without sight of the phrase model or the
development templates, and never tuned on); ``all`` draws from both. Benchmarks report on
``heldout``.

Sub-cases: people answering short ("Hello?"), long (a receptionist's greeting, the classic
false "machine"), after a pause, or twice ("Hello? ... Hello?"); personal, business and
carrier voicemail greetings, short ones, with a beep (400-2000 Hz, single or dual, 150-1500
ms) or none; IVR menus, queue messages over hold music, and hold music alone. Greetings come
from templates filled with random names, companies and numbers; voices are espeak-ng voices
and variants at 130-210 words a minute and Piper's joe at several length scales. The
telephone channel: level change, 300-3400 Hz band-pass, white or pink noise at 15-40 dB SNR
(relative to the speech), G.711 mu-law or A-law round trip.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from callfleet.agents import espeak
from callfleet.agents.amd import dev_greetings, heldout_greetings
from callfleet.media.frame import PCM16
from callfleet.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from callfleet.media.resample import resample
from callfleet.media.wav import write_wav

RATE = 8000
CLASSES = ("human", "voicemail", "ivr")
ESPEAK_VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-us+f3",
    "en-us+f4", "en-gb+f2", "en-us+m3", "en+klatt2", "en-gb-x-gbclan", "en-us+f5",
)  # fmt: skip
PIPER_SCALES = (0.8, 1.0, 1.2, 1.4)

FIRST = "Sarah Mike Priya Tom Alejandro Grace Wei Fatima Jonas Keisha Liam Olga Raj Emma".split()
LAST = "Johnson Patel Nguyen Garcia Smith Okafor Müller Kim Rossi Brown Cohen Silva".split()
COMPANY = [
    "Acme Dental", "Riverside Plumbing", "Northwind Insurance", "Bright Smile Orthodontics",
    "Summit Realty", "Green Valley Veterinary", "Metro Auto Repair", "Oak Street Law Office",
    "Blue Harbor Travel", "Pinecrest Family Clinic", "Delta Heating and Air", "City Bank",
]  # fmt: skip
DEPTS = ["billing", "sales", "support", "appointments", "pharmacy", "claims", "reservations"]

HUMAN_SHORT = [
    "Hello?", "Hello.", "Hi.", "Yeah?", "Yes?", "Hello, {first} speaking.", "Hi, this is {first}.",
    "Hey.", "Good morning.", "{first} here.", "Hello, who is this?", "Yep, hello?",
]  # fmt: skip
HUMAN_LONG = [
    "Good {tod}, thank you for calling {company}, this is {first}, how may I help you?",
    "Thank you for calling {company}, {first} speaking, how can I help you today?",
    "{company}, good {tod}, this is {first}. What can I do for you?",
    "Hello, you've got {first} at {company}, how can I help?",
    "Good {tod}, {company}, {first} speaking.",
    "Hi, {first} {last} speaking, who am I talking to?",
    "Hello? Yes, this is {first}, sorry, I was just in the middle of something.",
    "{company} front desk, this is {first}, how may I direct your call?",
]
HUMAN_SECOND = ["Hello?", "Hello? Anyone there?", "Hello, can you hear me?", "Who is this?"]
VM_PERSONAL = [
    "Hi, you've reached {first} {last}. I can't come to the phone right now, "
    "please leave a message and I'll get back to you.",
    "Hey, it's {first}. Leave me a message.",
    "Hi, this is {first}. I'm not available right now. Leave your name and number "
    "after the beep and I'll call you back as soon as I can.",
    "You have reached {first}. Sorry I missed your call. Please leave a message.",
    "Hello, you've reached the voicemail of {first} {last}. Please leave a detailed message.",
    "Hi! {first} and {first2} here. We're not home, so leave us a message.",
    "This is {first}. I'm away from my desk. Leave a message after the tone.",
    "{first} {last}. Leave a message.",
]
VM_BUSINESS = [
    "Thank you for calling {company}. Our office is currently closed. Please leave a "
    "message with your name and number and we will return your call.",
    "You've reached {company}. We're unable to take your call right now. Please leave a "
    "message after the tone.",
    "Hi, you've reached {first} at {company}. I'm either on the phone or away from my desk. "
    "Leave a message and I'll call you back.",
]
VM_CARRIER = [
    "The person you are calling is not available. At the tone, please record your message. "
    "When you have finished recording, you may hang up.",
    "Your call has been forwarded to an automated voice messaging system. {number} is not "
    "available. At the tone, please record your message.",
    "The subscriber you have dialed is not available. Please leave a message after the tone.",
    "{number} is not available. Record your message at the tone. When you are finished, "
    "hang up or press 1 for more options.",
    "The mailbox of {first} {last} is full and cannot accept messages.",
]
IVR_MENU = [
    "Thank you for calling {company}. For {dept}, press 1. For {dept2}, press 2. "
    "For all other inquiries, press 0.",
    "Welcome to {company}. Please listen carefully as our menu options have changed. "
    "To speak with a representative, press 0.",
    "Thank you for calling {company}. If you know your party's extension, you may dial it "
    "at any time. For {dept}, press 3.",
    "Hello and welcome to {company}. This call may be recorded for quality purposes. "
    "Please say or enter your account number.",
    "You've reached {company}. For hours and directions, press 1. For {dept}, press 2.",
]
IVR_QUEUE = [
    "Thank you for calling {company}. All of our representatives are currently busy. "
    "Please stay on the line and your call will be answered in the order it was received.",
    "Your call is important to us. Please hold for the next available agent.",
    "Thank you for holding. The estimated wait time is {mins} minutes.",
]


@dataclass(frozen=True)
class Templates:
    """What each kind of callee says (``str.format`` templates, see ``_fill``)."""

    human_short: list[str]
    human_long: list[str]
    human_second: list[str]
    vm_personal: list[str]
    vm_business: list[str]
    vm_carrier: list[str]
    ivr_menu: list[str]
    ivr_queue: list[str]

    @classmethod
    def from_module(cls, module: Any) -> Templates:
        return cls(*(getattr(module, f.upper()) for f in cls.__dataclass_fields__))

    def __add__(self, other: Templates) -> Templates:
        return Templates(*(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__))


DEV_TEMPLATES = Templates(
    HUMAN_SHORT, HUMAN_LONG, HUMAN_SECOND, VM_PERSONAL, VM_BUSINESS, VM_CARRIER, IVR_MENU,
    IVR_QUEUE,
) + Templates.from_module(dev_greetings)  # fmt: skip


def template_set(name: str) -> Templates:
    """``dev``, ``heldout`` or ``all``."""
    sets = {"dev": DEV_TEMPLATES, "heldout": Templates.from_module(heldout_greetings)}
    sets["all"] = sets["dev"] + sets["heldout"]
    if name not in sets:
        raise ValueError(f"template set must be dev, heldout or all, got {name!r}")
    return sets[name]


@dataclass
class _Spec:
    label: str
    kind: str
    parts: list[tuple[str, Any]]  # ("speech", text) | ("silence", ms) | ("beep", ...) | ...


def _fill(rng: random.Random, template: str) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(7))
    return template.format(
        first=rng.choice(FIRST),
        first2=rng.choice(FIRST),
        last=rng.choice(LAST),
        company=rng.choice(COMPANY),
        dept=rng.choice(DEPTS),
        dept2=rng.choice(DEPTS),
        tod=rng.choice(["morning", "afternoon", "evening"]),
        number=" ".join([digits[:3], digits[3:]]),
        mins=rng.choice(["two", "five", "ten"]),
    )


def _beep_part(rng: random.Random) -> tuple[str, Any]:
    f1 = rng.uniform(400, 2000)
    tones = [f1]
    if rng.random() < 0.15:
        tones.append(min(2000.0, f1 * rng.uniform(1.08, 1.3)))
    return ("beep", (tones, rng.uniform(150, 1500), rng.uniform(-25, -6)))


def _spec(rng: random.Random, label: str, tpl: Templates) -> _Spec:
    r = rng.random()
    s = ("silence", 0.0)
    if label == "human":
        lead = ("silence", rng.uniform(100, 900))
        if r < 0.4:
            t = _fill(rng, rng.choice(tpl.human_short))
            return _Spec(
                label, "short", [lead, ("speech", t), ("silence", rng.uniform(3000, 5000))]
            )
        if r < 0.7:
            t = _fill(rng, rng.choice(tpl.human_long))
            return _Spec(label, "long", [lead, ("speech", t), ("silence", rng.uniform(2500, 4000))])
        if r < 0.85:
            t = _fill(rng, rng.choice(tpl.human_short))
            pause = ("silence", rng.uniform(1500, 3500))
            return _Spec(
                label, "pause", [pause, ("speech", t), ("silence", rng.uniform(2500, 4000))]
            )
        t1, t2 = _fill(rng, rng.choice(tpl.human_short)), rng.choice(tpl.human_second)
        gap = ("silence", rng.uniform(1200, 2500))
        return _Spec(
            label, "twice", [lead, ("speech", t1), gap, ("speech", t2), ("silence", 2500.0)]
        )
    if label == "voicemail":
        lead = ("silence", rng.uniform(200, 1200))
        pool = tpl.vm_personal if r < 0.5 else tpl.vm_business if r < 0.7 else tpl.vm_carrier
        kind = "personal" if r < 0.5 else "business" if r < 0.7 else "carrier"
        t = _fill(rng, rng.choice(pool))
        if rng.random() < 0.2:
            t, kind = _fill(rng, "{first}. Leave a message."), "short"
        tail: list[tuple[str, Any]] = [("silence", rng.uniform(150, 1500))]
        if rng.random() < 0.8:
            tail += [_beep_part(rng), ("silence", rng.uniform(2000, 4000))]
        else:
            kind += "-nobeep"
            tail = [("silence", rng.uniform(4000, 6000))]
        return _Spec(label, kind, [lead, ("speech", t), *tail])
    lead = ("silence", rng.uniform(100, 800))
    if r < 0.55:
        t = _fill(rng, rng.choice(tpl.ivr_menu))
        return _Spec(label, "menu", [lead, ("speech", t), ("silence", rng.uniform(1000, 3000))])
    if r < 0.85:
        t = _fill(rng, rng.choice(tpl.ivr_queue))
        return _Spec(label, "queue", [lead, ("speech", t), ("music", rng.uniform(3000, 6000))])
    del s
    return _Spec(label, "music", [("music", rng.uniform(6000, 9000))])


def hold_music(rng: random.Random, duration_ms: float) -> npt.NDArray[np.float64]:
    """Chords of 3-4 notes with overtones, each struck and decaying, changing every
    0.4-1.0 s; peak about 0.3 of full scale."""
    n = int(duration_ms * RATE / 1000)
    out = np.zeros(n)
    pos, root = 0, rng.choice([48, 50, 53, 55, 57])
    while pos < n:
        length = int(rng.uniform(0.4, 1.0) * RATE)
        chord = (
            root
            + rng.choice([0, 5, 7, -3, 2])
            + np.array(rng.choice([[0, 4, 7], [0, 3, 7], [0, 4, 7, 11], [0, 5, 9]]))
        )
        t = np.arange(min(length, n - pos)) / RATE
        env = np.exp(-t * rng.uniform(1.5, 4.0)) * (1 - np.exp(-t * 80))
        for note in chord:
            f = 440.0 * 2 ** ((note + 12 * rng.choice([0, 1]) - 57) / 12)
            for h in range(1, 5):
                if f * h < 3400:
                    out[pos : pos + len(t)] += env * np.sin(2 * np.pi * f * h * t) / h**1.5
        pos += length
    return 0.3 * out / max(1e-9, float(np.max(np.abs(out))))


async def _speech(rng: random.Random, text: str, piper: Any) -> tuple[PCM16, str, float]:
    """(8 kHz audio, voice, speed) of ``text``."""
    if piper is not None and rng.random() < 0.3:
        scale = rng.choice(PIPER_SCALES)
        piper.update_options(length_scale=scale)
        frames = [f async for f in piper.synthesize(text)]
        audio = np.concatenate([f.samples for f in frames])
        return resample(audio, piper.sample_rate, RATE), "piper-joe", scale
    voice, wpm = rng.choice(ESPEAK_VOICES), rng.randint(130, 210)
    audio, rate = await espeak.synthesize(text, voice=voice, words_per_minute=wpm)
    return resample(audio, rate, RATE), f"espeak-{voice}", float(wpm)


def _bandpass(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """300-3400 Hz with 100 Hz cosine edges (zero phase, FFT mask)."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / RATE)
    mask = np.clip((f - 200) / 100, 0, 1) * np.clip((3500 - f) / 100, 0, 1)
    mask = 0.5 - 0.5 * np.cos(np.pi * mask)
    return np.fft.irfft(spec * mask, len(x))


def _noise(rng: np.random.Generator, n: int, pink: bool) -> npt.NDArray[np.float64]:
    w = rng.standard_normal(n)
    if not pink:
        return w
    spec = np.fft.rfft(w)
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec[1:] /= np.sqrt(f[1:] / 100)
    spec[0] = 0
    p = np.fft.irfft(spec, n)
    return p / (np.std(p) + 1e-12)


async def _render(rng: random.Random, spec: _Spec, piper: Any) -> tuple[PCM16, dict[str, Any]]:
    parts: list[npt.NDArray[np.float64]] = []
    pos = 0
    beep_ms: float | None = None
    speech_end_ms = 0.0
    voice, speed = "", 0.0
    level = 10 ** (rng.uniform(-26, -10) / 20) * 32767  # speech RMS
    texts: list[str] = []
    for kind, arg in spec.parts:
        if kind == "silence":
            seg = np.zeros(int(arg * RATE / 1000))
        elif kind == "speech":
            audio, voice, speed = await _speech(rng, arg, piper)
            a = audio.astype(np.float64)
            a = np.trim_zeros(np.where(np.abs(a) < 30, 0, a)) if np.any(np.abs(a) >= 30) else a
            seg = a / (np.sqrt(np.mean(a**2)) + 1e-9) * level
            speech_end_ms = (pos + len(seg)) * 1000 / RATE
            texts.append(arg)
        elif kind == "beep":
            tones, dur, dbfs = arg
            t = np.arange(int(dur * RATE / 1000)) / RATE
            amp = 10 ** (dbfs / 20) * 32767 / len(tones)
            seg = sum(amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) for f in tones)
            ramp = min(len(t) // 4, int(0.005 * RATE))
            if ramp:
                seg[:ramp] *= np.linspace(0, 1, ramp)
                seg[-ramp:] *= np.linspace(1, 0, ramp)
            beep_ms = pos * 1000 / RATE
        else:  # music
            seg = hold_music(rng, arg) * 32767 * 10 ** (rng.uniform(-12, -2) / 20)
        parts.append(np.asarray(seg, dtype=np.float64))
        pos += len(seg)
    x = np.concatenate(parts)
    x = _bandpass(x)
    # A level change somewhere (carrier AGC, a handset moved), +-6 dB.
    if rng.random() < 0.3:
        cut = rng.randrange(len(x))
        x[cut:] *= 10 ** (rng.uniform(-6, 6) / 20)
    snr = rng.uniform(15, 40)
    nrng = np.random.default_rng(rng.randrange(2**32))
    noise = _bandpass(_noise(nrng, len(x), pink=rng.random() < 0.5))
    x = x + noise / (np.std(noise) + 1e-12) * level * 10 ** (-snr / 20)
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    codec = rng.choice(["pcmu", "pcma"])
    pcm = ulaw_decode(ulaw_encode(pcm)) if codec == "pcmu" else alaw_decode(alaw_encode(pcm))
    meta = {
        "label": spec.label,
        "kind": spec.kind,
        "beep_ms": None if beep_ms is None else round(beep_ms, 1),
        "speech_end_ms": round(speech_end_ms, 1),
        "text": " | ".join(texts),
        "voice": voice,
        "speed": speed,
        "snr_db": round(snr, 1),
        "codec": codec,
    }
    return pcm, meta


async def agenerate(
    out_dir: str | Path,
    n_per_class: int,
    seed: int,
    *,
    templates: str = "dev",
    use_piper: bool = True,
) -> Path:
    """Writes the corpus (see the module docstring); returns the labels file's path."""
    tpl = template_set(templates)
    out = Path(out_dir)
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    rng = random.Random(seed)
    piper = None
    if use_piper:
        try:
            from callfleet.agents.providers.piper import PiperTTS

            piper = PiperTTS(noise_scale=0.667)
        except Exception:
            piper = None
    labels_path = out / "labels.jsonl"
    lines: list[str] = []
    for i in range(n_per_class):
        for label in CLASSES:
            spec = _spec(rng, label, tpl)
            pcm, meta = await _render(rng, spec, piper)
            name = f"{label}_{seed}_{i:04d}.wav"
            await asyncio.to_thread(write_wav, out / name, pcm, RATE)
            lines.append(json.dumps({"file": name, **meta}) + "\n")
    await asyncio.to_thread(labels_path.write_text, "".join(lines), encoding="utf-8")
    return labels_path


def generate(out_dir: str | Path, n_per_class: int, seed: int, templates: str = "dev") -> Path:
    """Synchronous ``agenerate`` (for scripts; not from inside an event loop)."""
    return asyncio.run(agenerate(out_dir, n_per_class, seed, templates=templates))
