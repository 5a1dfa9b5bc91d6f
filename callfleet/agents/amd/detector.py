"""Answering-machine detection: is the callee a person, a voicemail greeting or an IVR?

``AnsweringMachineDetector`` is fed the callee's audio frame by frame from the answer. Three
sources of evidence are combined:

- **cadence** (from the VAD, as Asterisk's ``AMD()`` does): a person says a short greeting
  ("Hello?", under ``greeting_ms``) and waits (``after_greeting_silence_ms``); a machine
  talks on. A short greeting followed by that silence decides ``human`` at once;
- **the beep** (``callfleet.media.beep.BeepDetector``): a steady tone means ``voicemail``
  whatever was decided before (a *revision*), and gives ``beep_ms``;
- **the words** (STT, then ``VoiceMailDetector``: the LLM if one is given, else or on its
  failure the offline phrase model): every pause in the greeting and every
  ``transcript_every_ms`` of continuous speech the greeting so far is transcribed and
  classified. This is what keeps a receptionist's long greeting ("Thank you for calling
  Acme Dental, this is Sarah, how can I help you?") from being called a machine, and what
  tells an IVR menu from a voicemail greeting.

Time (``*_ms``) runs from the first frame not flagged ``"early"``: early media (ringback,
carrier announcements before the answer) is ignored and does not start the clock.

**Leaving a voicemail message.** Once the label is ``voicemail``, the detector also finds
the moment the callee's machine starts recording: the end of the beep, or, when no beep
comes, ``no_beep_silence_ms`` of silence after the greeting. A caller either awaits
``wait_for_message_start(timeout_s)`` (returns that moment in ms, or ``None`` on timeout or
if the call turns out not to be a voicemail), or watches ``push_frame`` results for one with
``event == AMDEvent.MESSAGE_START``; it then starts speaking straight away. Keep feeding
frames while waiting: the detector only sees what it is fed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from dataclasses import dataclass, fields, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from callfleet.agents.amd.classifier import (
    TranscriptVerdict,
    VoiceMailDetector,
    classify_transcript,
)
from callfleet.agents.providers.base import LLM, STT, VAD, VADEventType, VADStream
from callfleet.media.beep import Beep, BeepDetector
from callfleet.media.frame import PCM16, AudioFrame
from callfleet.media.resample import Resampler

logger = logging.getLogger(__name__)

#: Rate of the beep detector and of the audio kept for transcription (Hz).
ANALYSIS_RATE = 8000
LABELS = ("human", "voicemail", "ivr", "unknown")
#: Who transcribes the greeting: the detector ("stt") or another recognizer ("pushed").
TranscriptSource = Literal["stt", "pushed"]
#: A transcript verdict this confident that it is a person decides ``human`` on its own.
_STRONG_HUMAN = 0.85
#: The reason of a ``human`` decided on cadence while the greeting's words were awaited.
_BEFORE_WORDS = "short greeting then silence (before its words)"
#: Music meter: block length (samples at ``ANALYSIS_RATE``), spectral similarity of two
#: blocks that counts as "the same sound", level over the quietest blocks (dB) that counts.
_MUSIC_BLOCK = 512
_MUSIC_SIMILARITY = 0.8
_MUSIC_OVER_FLOOR_DB = 12.0


def _leans_machine(verdict: TranscriptVerdict | None) -> bool:
    """Words too few to decide, but more machine phrases than person phrases."""
    if verdict is None:
        return False
    scores = verdict.scores
    return max(scores.get("voicemail", 0.0), scores.get("ivr", 0.0)) > scores.get("human", 0.0)


def _machine_kind(verdict: TranscriptVerdict | None) -> str:
    """Which machine a long greeting is when its words do not decide: ``ivr`` if they
    hold more menu phrases than voicemail ones ("welcome to", "thank you for calling"),
    else ``voicemail`` (the commoner answer on outbound calls)."""
    if verdict is None:
        return "voicemail"
    scores = verdict.scores
    return "ivr" if scores.get("ivr", 0.0) > scores.get("voicemail", 0.0) else "voicemail"


class _MusicMeter:
    """Sustained, steady sound outside speech: hold music. Counts the ms of 64 ms blocks
    whose 200-3400 Hz power spectrum matches the previous block's (cosine similarity over
    ``_MUSIC_SIMILARITY``) and whose level is ``_MUSIC_OVER_FLOOR_DB`` above the quietest
    blocks so far (or above -50 dBFS before any quiet block). Speech changes its spectrum
    every few tens of ms and noise is random, so both rarely count; chords do."""

    def __init__(self) -> None:
        self._buf = np.zeros(0, np.float64)
        self._prev: npt.NDArray[np.float64] | None = None
        self._window = np.hanning(_MUSIC_BLOCK)
        self._floor_db = -50.0
        self.music_ms = 0.0

    def process(self, samples: PCM16, speaking: bool) -> None:
        self._buf = np.concatenate([self._buf, samples.astype(np.float64)])
        while len(self._buf) >= _MUSIC_BLOCK:
            block, self._buf = self._buf[:_MUSIC_BLOCK], self._buf[_MUSIC_BLOCK:]
            power = np.abs(np.fft.rfft(block * self._window))[13:218] ** 2
            level = 10 * math.log10(float(np.mean(block**2)) / (32767.0**2 / 2) + 1e-12)
            self._floor_db = min(self._floor_db, level) if level > -90 else self._floor_db
            prev, self._prev = self._prev, power
            if prev is None or level < self._floor_db + _MUSIC_OVER_FLOOR_DB:
                continue
            sim = float(power @ prev) / math.sqrt(float(power @ power) * float(prev @ prev) + 1e-30)
            if sim > _MUSIC_SIMILARITY:
                self.music_ms += _MUSIC_BLOCK * 1000 / ANALYSIS_RATE


class AMDEvent(enum.Enum):
    DECISION = "decision"  # the first label
    REVISION = "revision"  # a different label than before
    MESSAGE_START = "message_start"  # voicemail: start the message now


@dataclass(frozen=True)
class AMDResult:
    """One decision. ``label``: human | voicemail | ivr | unknown; ``confidence`` 0..1;
    ``decision_ms``: when it was decided (ms since the answer); ``beep_ms``: start of the
    beep, if one was heard; ``revised``: an earlier, different label was reported;
    ``reason``: which evidence decided; ``transcript``: what the STT heard so far;
    ``greeting_ended_ms``: end of the last speech heard; ``message_start_ms``: when a
    voicemail message can start (set on ``MESSAGE_START`` results)."""

    label: str
    confidence: float
    decision_ms: float
    beep_ms: float | None
    revised: bool
    reason: str
    transcript: str = ""
    event: AMDEvent = AMDEvent.DECISION
    greeting_ended_ms: float | None = None
    message_start_ms: float | None = None


@dataclass(frozen=True)
class _AMDOptions:
    greeting_ms: float
    after_greeting_silence_ms: float
    total_analysis_ms: float
    no_speech_ms: float
    min_transcript_confidence: float
    revise_confidence: float
    transcript_every_ms: float
    max_transcript_ms: float
    no_beep_silence_ms: float
    max_listen_ms: float
    long_human_ms: float
    music_ms: float
    transcripts: TranscriptSource
    pushed_wait_ms: float
    human_words_silence_ms: float
    talking_human_ms: float


class AnsweringMachineDetector:
    """Streaming AMD for one call; see the module docstring.

    ``vad``: a VAD (e.g. ``SileroVAD(sample_rate=8000)``); ``stt``: transcribes greetings
    (``None``: cadence and beep only); ``llm``: classifies transcripts (``None``: the phrase
    model); ``voicemail_detector`` replaces the one built from ``llm``.

    Keyword-only options (defaults from Asterisk's ``amd.conf`` where it has one, tuned on
    the generated corpus):

    - ``greeting_ms``: longest greeting (speech before the first long pause) that counts
      as a person's "Hello?". Default 1800 (Asterisk 1500).
    - ``after_greeting_silence_ms``: silence after a short greeting that decides
      ``human``. Default 600 (Asterisk 800; 600 lost no accuracy on the development corpus).
    - ``total_analysis_ms``: if nothing decided by then, decide from what is known.
      Default 6000 (Asterisk 5000; 6000 halved the long greetings of people called
      machines on the development corpus).
    - ``no_speech_ms``: with no speech, beep or music by then the label is ``unknown`` (so
      the agent can greet a callee who waits for the caller to speak); speech, a beep or
      music after this still decide. Default 2500 (Asterisk's initial silence, which
      Asterisk calls a machine; people often wait silently, so here it is not).
    - ``min_transcript_confidence``: a transcript verdict decides above this. Default 0.7.
    - ``revise_confidence``: a transcript verdict overturns a ``human`` decision above
      this. Default 0.9.
    - ``transcript_every_ms``: during continuous speech, transcribe every this many ms.
      Default 1500.
    - ``max_transcript_ms``: transcribe at most this much of the greeting. Default 12000.
    - ``no_beep_silence_ms``: after a voicemail greeting, silence that starts the message
      when no beep comes. Default 2500.
    - ``max_listen_ms``: stop listening (for beeps and revisions) after this. Default 30000.
    - ``long_human_ms``: a greeting longer than ``greeting_ms`` whose words say nothing
      (STT missing or unsure) is still a person's up to this long, a machine's beyond.
      Default 6000.
    - ``music_ms``: this much steady non-speech sound (hold music) means ``ivr``.
      Default 2000.
    - ``transcripts``: ``"stt"`` (default): the detector transcribes each pause in the
      greeting itself. ``"pushed"``: another recognizer already transcribes every
      utterance (an ``AgentSession``'s STT) and hands its final transcripts to
      ``push_transcript``; the detector then only transcribes speech that has not paused
      yet (every ``transcript_every_ms``), so a "Hello?" is not transcribed twice.
    - ``pushed_wait_ms``: with ``transcripts="pushed"``, how long after an utterance ends
      its transcript is waited for before deciding without it. Default 2000.
    - ``human_words_silence_ms``: silence after a short greeting whose words already say
      "person" that decides ``human`` without the full ``after_greeting_silence_ms``.
      Default 400.
    - ``talking_human_ms``: at ``total_analysis_ms`` a callee still talking whose words
      sound like a person is given until this long to pause (a person stops for an
      answer; a machine talks on) before deciding on the words. Default 8000.
    - ``call_id``: for log lines.

    A short greeting followed by silence decides ``human`` without waiting for its
    transcript (the greeting must not wait on a slow STT); words that then say
    ``voicemail`` or ``ivr`` with ``min_transcript_confidence`` revise it. A decision made
    on the words themselves needs ``revise_confidence`` to be overturned.
    """

    def __init__(
        self,
        vad: VAD,
        stt: STT | None = None,
        llm: LLM | None = None,
        *,
        voicemail_detector: VoiceMailDetector | None = None,
        greeting_ms: float = 1800.0,
        after_greeting_silence_ms: float = 600.0,
        total_analysis_ms: float = 6000.0,
        no_speech_ms: float = 2500.0,
        min_transcript_confidence: float = 0.7,
        revise_confidence: float = 0.9,
        transcript_every_ms: float = 1500.0,
        max_transcript_ms: float = 12000.0,
        no_beep_silence_ms: float = 2500.0,
        max_listen_ms: float = 30000.0,
        long_human_ms: float = 6000.0,
        music_ms: float = 2000.0,
        transcripts: TranscriptSource = "stt",
        pushed_wait_ms: float = 2000.0,
        human_words_silence_ms: float = 400.0,
        talking_human_ms: float = 8000.0,
        call_id: str | None = None,
    ) -> None:
        given = locals()  # every keyword option above is a field of _AMDOptions
        self._opts = _AMDOptions(**{f.name: given[f.name] for f in fields(_AMDOptions)})
        if transcripts not in ("stt", "pushed"):
            raise ValueError(f"transcripts must be 'stt' or 'pushed', got {transcripts!r}")
        for name in ("greeting_ms", "after_greeting_silence_ms", "total_analysis_ms"):
            if getattr(self._opts, name) <= 0:
                raise ValueError(f"{name} must be > 0 ms, got {getattr(self._opts, name)!r}")
        self._vad_stream: VADStream = vad.stream()
        self._stt = stt
        self._vmd = voicemail_detector or VoiceMailDetector(llm)
        self._call_id = call_id
        self._beeps = BeepDetector(ANALYSIS_RATE)
        self._music = _MusicMeter()
        self._resampler: Resampler | None = None
        self._audio: list[PCM16] = []  # analysis-rate audio since the answer
        self._audio_len = 0
        self._now_ms = 0.0
        self._started = False
        self.early_ms = 0.0  # early media seen (ignored), ms
        # Speech, from the VAD: (start_ms, end_ms) of finished utterances, current start.
        self._utterances: list[tuple[float, float]] = []
        self._speech_start: float | None = None
        self._last_transcribed_ms = -math.inf
        self._transcript = ""
        self._verdict: TranscriptVerdict | None = None
        self._stt_task: asyncio.Task[tuple[str, TranscriptVerdict]] | None = None
        self._stt_pending = False
        # transcripts="pushed": texts received, and until when one is awaited (ms).
        self._pushed: list[str] = []
        self._pushed_new = False
        self._pushed_due_ms: float | None = None
        self.stt_ms = 0.0  # wall time spent waiting on STT + classifier, ms (for stats)
        # Decisions.
        self._results: list[AMDResult] = []
        self._beep: Beep | None = None
        self._beep_ms: float | None = None
        self._message_start_ms: float | None = None
        self._message_event = asyncio.Event()
        self._done = False

    # -- public --------------------------------------------------------------------------

    @property
    def result(self) -> AMDResult | None:
        """The latest decision (``None`` until one is made)."""
        decisions = [r for r in self._results if r.event is not AMDEvent.MESSAGE_START]
        return decisions[-1] if decisions else None

    @property
    def results(self) -> list[AMDResult]:
        """Everything reported so far, in order."""
        return list(self._results)

    @property
    def beep(self) -> Beep | None:
        """The beep heard (once it has ended), else ``None``."""
        return self._beep

    @property
    def greeting_ended_ms(self) -> float | None:
        """End (ms) of the last speech heard, ``None`` while speaking or before any."""
        if self._speech_start is not None or not self._utterances:
            return None
        return self._utterances[-1][1]

    @property
    def message_start_ms(self) -> float | None:
        return self._message_start_ms

    @property
    def now_ms(self) -> float:
        """Audio fed since the answer, ms."""
        return self._now_ms

    async def wait_for_message_start(self, timeout_s: float) -> float | None:
        """Waits until a voicemail message can start (end of the beep, or the greeting
        followed by ``no_beep_silence_ms`` of silence); returns that time in ms since the
        answer, or ``None`` after ``timeout_s`` seconds. Frames must keep being fed."""
        try:
            await asyncio.wait_for(self._message_event.wait(), timeout_s)
        except TimeoutError:
            return None
        return self._message_start_ms

    async def push_frame(self, frame: AudioFrame) -> list[AMDResult]:
        """Feeds the next frame; returns the results (decisions, revisions, message start)
        it caused. Frames flagged ``"early"`` are ignored."""
        if "early" in frame.flags:
            if not self._started:
                self.early_ms += frame.duration_ms
            return []
        self._started = True
        if self._done:
            return []
        out: list[AMDResult] = []
        out += self._collect_transcript()
        if self._resampler is None or self._resampler.from_rate != frame.sample_rate:
            self._resampler = Resampler(frame.sample_rate, ANALYSIS_RATE)
        samples = self._resampler.process(frame.samples)
        self._now_ms += frame.duration_ms
        if self._audio_len < self._opts.max_transcript_ms * ANALYSIS_RATE / 1000 + ANALYSIS_RATE:
            self._audio.append(samples)
            self._audio_len += len(samples)
        for event in await self._vad_stream.push_frame(frame):
            if event.type is VADEventType.START_OF_SPEECH:
                self._speech_start = (event.timestamp_s - event.speech_duration_s) * 1000
            else:
                end = (event.timestamp_s - event.silence_duration_s) * 1000
                start = self._speech_start if self._speech_start is not None else end
                self._utterances.append((start, end))
                self._speech_start = None
                self._request_transcript(at_pause=True)
        out += self._check_beep(self._beeps.process(samples))
        if self._beeps.in_progress_since_ms is None and self._beep_ms is None:
            self._music.process(samples, self._speech_start is not None)
        if self._speech_start is not None:
            if self._now_ms - max(self._last_transcribed_ms, self._first_speech_ms() or 0.0) >= (
                self._opts.transcript_every_ms
            ):
                self._request_transcript()
        out += self._decide()
        out += self._check_message_start()
        if self._now_ms >= self._opts.max_listen_ms:
            self._done = True
        return out

    def push_transcript(self, text: str) -> None:
        """A final transcript of the callee's latest utterance from another recognizer
        (``transcripts="pushed"``); it is classified and used from the next frame on."""
        if self._done:
            return
        self._pushed_due_ms = None
        if not text.strip():
            return
        self._pushed.append(text.strip())
        if self._stt_task is None:
            self._classify_pushed()
        else:
            self._pushed_new = True

    def _classify_pushed(self) -> None:
        self._pushed_new = False
        self._stt_task = asyncio.create_task(self._classify(" ".join(self._pushed)))

    async def settle(self) -> list[AMDResult]:
        """Waits for a transcription in flight and applies it. Offline analysis calls this
        after every frame to see the file as if the STT were instant (the CLI does)."""
        out: list[AMDResult] = []
        while self._stt_task is not None:
            await asyncio.wait([self._stt_task])
            out += self._collect_transcript()
            out += self._decide()
        return out

    async def aclose(self) -> None:
        """Stops any transcription in flight and closes the VAD stream; idempotent."""
        self._done = True
        if self._stt_task is not None:
            self._stt_task.cancel()
            await asyncio.gather(self._stt_task, return_exceptions=True)
            self._stt_task = None
        await self._vad_stream.aclose()

    # -- evidence ------------------------------------------------------------------------

    def _first_speech_ms(self) -> float | None:
        if self._utterances:
            return self._utterances[0][0]
        return self._speech_start

    def _speech_total_ms(self) -> float:
        total = sum(e - s for s, e in self._utterances)
        if self._speech_start is not None:
            total += self._now_ms - self._speech_start
        return total

    def _greeting_ms(self, gap: float) -> tuple[float, bool]:
        """(length in ms of the greeting: speech up to the first pause of ``gap`` ms,
        whether that pause has come)."""
        first = self._first_speech_ms()
        if first is None:
            return 0.0, False
        end = first
        for i, (_, e) in enumerate(self._utterances):
            nxt = self._utterances[i + 1][0] if i + 1 < len(self._utterances) else None
            if nxt is None:
                nxt = self._speech_start if self._speech_start is not None else self._now_ms
            end = e
            if nxt - e >= gap:
                return e - first, True
        if self._speech_start is not None:
            end = self._now_ms
        return end - first, False

    def _waiting_for_words(self) -> bool:
        """A transcript of speech heard is on its way."""
        if self._stt_task is not None:
            return True
        due = self._pushed_due_ms
        return due is not None and self._now_ms < due

    def _request_transcript(self, at_pause: bool = False) -> None:
        if at_pause and self._opts.transcripts == "pushed":
            self._pushed_due_ms = self._now_ms + self._opts.pushed_wait_ms
            return
        if self._stt is None:
            return
        first = self._first_speech_ms()
        if first is None or first > self._opts.max_transcript_ms:
            return
        if self._last_transcribed_ms - first >= self._opts.max_transcript_ms:
            return
        if self._stt_task is not None:
            self._stt_pending = True
            return
        start = max(0, int((first - 300) * ANALYSIS_RATE / 1000))
        stop = int(min(self._now_ms, first + self._opts.max_transcript_ms) * ANALYSIS_RATE / 1000)
        audio = np.concatenate(self._audio)[start:stop] if self._audio else np.zeros(0, np.int16)
        self._last_transcribed_ms = self._now_ms
        self._stt_task = asyncio.create_task(self._transcribe(audio))

    async def _transcribe(self, audio: PCM16) -> tuple[str, TranscriptVerdict]:
        assert self._stt is not None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            event = await self._stt.recognize(audio, ANALYSIS_RATE)
            return await self._classify(event.text)
        finally:
            self.stt_ms += (loop.time() - t0) * 1000

    async def _classify(self, text: str) -> tuple[str, TranscriptVerdict]:
        verdict = await self._vmd.classify(text, call_id=self._call_id) if text else None
        return text, verdict or classify_transcript("")

    def _collect_transcript(self) -> list[AMDResult]:
        task = self._stt_task
        if task is None or not task.done():
            return []
        self._stt_task = None
        try:
            text, verdict = task.result()
        except Exception as e:
            logger.warning("AMD transcription failed: %s", e, extra={"call_id": self._call_id})
        else:
            if text:
                self._transcript, self._verdict = text, verdict
        if self._pushed_new:
            self._classify_pushed()
        elif self._stt_pending:
            self._stt_pending = False
            self._request_transcript()
        return []

    def _check_beep(self, ended: list[Beep]) -> list[AMDResult]:
        out: list[AMDResult] = []
        for beep in ended:
            if beep.is_sit and self._first_speech_ms() is None:  # after a greeting: a beep
                out += self._report("unknown", 0.9, "special information tone (intercept)")
                self._done = True
                return out
            if self._beep is None:
                self._beep = beep
                self._beep_ms = beep.start_ms
        start = self._beeps.in_progress_since_ms
        if self._beep_ms is None and start is not None:
            self._beep_ms = start
        if self._beep_ms is not None:
            current = self.result
            if current is None or current.label != "voicemail" or current.beep_ms is None:
                out += self._report("voicemail", 0.97, "beep")
        return out

    def _check_message_start(self) -> list[AMDResult]:
        current = self.result
        if self._message_start_ms is not None or current is None:
            return []
        if current.label != "voicemail":
            return []
        if self._beep is not None:
            reason = "beep ended"
        elif self._beep_ms is not None or self._speech_start is not None:
            return []  # a beep or speech in progress
        else:
            last = self._utterances[-1][1] if self._utterances else 0.0
            if self._now_ms - last < self._opts.no_beep_silence_ms:
                return []
            if self._beeps.in_progress_since_ms is not None:
                return []
            reason = "greeting ended, no beep"
        self._message_start_ms = self._now_ms
        self._message_event.set()
        result = replace(
            current,
            event=AMDEvent.MESSAGE_START,
            decision_ms=self._now_ms,
            reason=reason,
            revised=False,
            message_start_ms=self._now_ms,
            greeting_ended_ms=self.greeting_ended_ms,
        )
        self._results.append(result)
        self._done = True
        return [result]

    # -- decisions -----------------------------------------------------------------------

    def _decide(self) -> list[AMDResult]:
        opts = self._opts
        current = self.result
        verdict = self._verdict
        if current is None:
            return self._decide_first(verdict)
        if current.beep_ms is not None:
            return []  # a beep is the strongest evidence there is
        by_cadence = current.reason.startswith(("long greeting", "short", "no speech"))
        if current.label == "unknown" or (by_cadence and current.label != "ivr"):
            # Music after speech: a queue, not a person or a voicemail (they go quiet).
            if self._music.music_ms >= opts.music_ms * (1.0 if current.label == "unknown" else 1.5):
                return self._report("ivr", 0.7, "hold music")
        if verdict is None or verdict.label == "unknown" or verdict.label == current.label:
            if current.label == "unknown" and self._first_speech_ms() is not None:
                return self._decide_first(verdict, late=True)
            return []
        if current.label == "unknown":
            return self._report(verdict.label, verdict.confidence, "transcript")
        if current.label == "human":
            needed = opts.revise_confidence
            if current.reason.startswith("short greeting"):
                needed = opts.min_transcript_confidence  # a "Hello?" can be a greeting's start
            if verdict.confidence >= needed:
                return self._report(verdict.label, verdict.confidence, "transcript")
            return []
        # voicemail <-> ivr on the words; a machine by cadence only -> human on strong words
        if verdict.label != "human" and verdict.confidence >= opts.min_transcript_confidence:
            return self._report(verdict.label, verdict.confidence, "transcript")
        if verdict.label == "human" and by_cadence and verdict.confidence >= _STRONG_HUMAN:
            return self._report("human", verdict.confidence, "transcript")
        return []

    def _decide_first(
        self, verdict: TranscriptVerdict | None, late: bool = False
    ) -> list[AMDResult]:
        opts = self._opts
        first = self._first_speech_ms()
        if verdict is not None and verdict.confidence >= opts.min_transcript_confidence:
            if verdict.label in ("voicemail", "ivr"):
                return self._report(verdict.label, verdict.confidence, "transcript")
            if verdict.label == "human" and verdict.confidence >= _STRONG_HUMAN:
                return self._report("human", verdict.confidence, "transcript")
        if first is None:
            if self._music.music_ms >= opts.music_ms:
                return self._report("ivr", 0.7, "hold music")
            if self._now_ms >= opts.no_speech_ms and not late:
                # A silent callee is waiting for the caller: let the agent speak; speech,
                # a beep or music after this still decide.
                return self._report("unknown", 0.5, "no speech")
            return []
        greeting, paused = self._greeting_ms(opts.after_greeting_silence_ms)
        waiting_stt = self._waiting_for_words()
        human_words = verdict is not None and verdict.label == "human"
        machine_words = verdict is not None and verdict.label in ("voicemail", "ivr")
        if (
            human_words
            and verdict is not None
            and verdict.confidence >= opts.min_transcript_confidence
        ):
            quick, quick_paused = self._greeting_ms(opts.human_words_silence_ms)
            if quick_paused and quick <= opts.greeting_ms:
                return self._report("human", 0.8, "short greeting, human words, silence")
        if paused and greeting <= opts.greeting_ms and not machine_words:
            # A person's "Hello?" and wait: decided now, the words may still revise it.
            if verdict is None and (waiting_stt or self._stt is not None):
                return self._report("human", 0.75, _BEFORE_WORDS)
            return self._report("human", 0.8, "short greeting then silence")
        if paused and not waiting_stt:
            if human_words:
                return self._report("human", 0.7, "greeting then silence, human words")
            if self._stt is not None and verdict is None:
                pass  # no words yet: wait for the transcript of this greeting
            elif (
                greeting <= opts.long_human_ms and not machine_words and not _leans_machine(verdict)
            ):
                return self._report("human", 0.5, "short greeting then silence")
            else:
                return self._report(_machine_kind(verdict), 0.55, "long greeting")
        if self._now_ms >= opts.total_analysis_ms and not waiting_stt and not late:
            if self._music.music_ms >= opts.music_ms:
                return self._report("ivr", 0.6, "hold music")
            last_end = self._utterances[-1][1] if self._utterances else -math.inf
            if (
                self._speech_start is None
                and self._now_ms - last_end < opts.after_greeting_silence_ms
                and self._now_ms < opts.talking_human_ms
            ):
                return []  # the greeting just stopped: the pause decides in a moment
            if verdict is not None and verdict.confidence >= opts.min_transcript_confidence:
                still_talking = self._speech_start is not None
                if (
                    verdict.label == "human"
                    and still_talking
                    and self._now_ms < opts.talking_human_ms
                ):
                    return []  # people pause for an answer: wait for it, machines talk on
                return self._report(verdict.label, verdict.confidence * 0.8, "transcript (weak)")
            if self._speech_total_ms() > opts.greeting_ms:
                return self._report(_machine_kind(verdict), 0.55, "long greeting (timeout)")
            return self._report("human", 0.55, "short speech (timeout)")
        return []

    def _report(self, label: str, confidence: float, reason: str) -> list[AMDResult]:
        previous = self.result
        if previous is not None and previous.label == label and previous.beep_ms == self._beep_ms:
            return []
        revised = previous is not None and previous.label != label
        result = AMDResult(
            label=label,
            confidence=round(confidence, 3),
            decision_ms=round(self._now_ms, 1),
            beep_ms=None if self._beep_ms is None else round(self._beep_ms, 1),
            revised=revised,
            reason=reason,
            transcript=self._transcript,
            event=AMDEvent.REVISION if revised else AMDEvent.DECISION,
            greeting_ended_ms=self.greeting_ended_ms,
        )
        logger.info(
            "AMD %s %s (%.2f) at %.0f ms: %s",
            "revised to" if revised else "decided",
            label,
            confidence,
            self._now_ms,
            reason,
            extra={"call_id": self._call_id},
        )
        self._results.append(result)
        return [result]
