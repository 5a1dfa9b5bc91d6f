"""``AgentSession``: the runtime of the voice pipeline on one call.

It owns the options, the providers shared by its agents, the conversation history
and the turn taking: it hears the user (``AudioRecognition``), decides when the user
has finished and whether they are interrupting, and hands each turn to the running
agent's activity, which speaks the reply. Events (``session.on(name, handler)``):

- ``user_state_changed`` (old, new): ``listening`` | ``speaking`` | ``away``
- ``agent_state_changed`` (old, new): ``initializing`` | ``listening`` | ``thinking``
  | ``speaking``
- ``user_input_transcribed`` (UserInputTranscribed)
- ``conversation_item_added`` (ChatItem)
- ``function_tools_executed`` (calls, outputs)
- ``metrics_collected`` (TurnMetrics)
- ``speech_created`` (SpeechHandle)
- ``agent_false_interruption`` (SpeechHandle): an interruption with no words; the
  speech resumed when ``resume_false_interruption``
- ``error`` (Exception, source)
- ``dtmf_received`` (DtmfReceived), ``dtmf_sending`` (digits), ``dtmf_sent`` (digits):
  see ``callfleet.agents.dtmf``
- ``ivr_detected`` (prompt), ``ivr_outcome`` (IvrOutcome): see ``callfleet.agents.ivr``
- ``close`` (CloseEvent)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from callfleet.agents.activity import AgentActivity
from callfleet.agents.agent import Agent, AgentTask, ModelSettings, StopResponse
from callfleet.agents.aio import cancel_and_wait, once
from callfleet.agents.amd.runner import AMDOptions, AMDRunner
from callfleet.agents.call_io import AgentCall
from callfleet.agents.chat import ChatContext, ChatItem, ChatMessage, ChatRole
from callfleet.agents.dtmf import DTMFHandler, SessionDtmf
from callfleet.agents.errors import AgentError
from callfleet.agents.ivr import IVRMonitor
from callfleet.agents.options import NOT_GIVEN, SessionOptions
from callfleet.agents.providers.base import LLM, STT, TTS, VAD, ToolChoice, VADEvent
from callfleet.agents.recognition import AudioRecognition, UserTurn
from callfleet.agents.speech import SpeechHandle, TurnMetrics
from callfleet.agents.transfer import (
    TransferBackend,
    TransferMode,
    TransferOptions,
    TransferOutcome,
    transferer_for,
)
from callfleet.agents.transforms import TextTransform, resolve_transforms
from callfleet.events import EventEmitter
from callfleet.media.frame import AudioFrame

log = logging.getLogger(__name__)

UserdataT = TypeVar("UserdataT")
T = TypeVar("T")
UserState = Literal["listening", "speaking", "away"]
AgentState = Literal["initializing", "listening", "thinking", "speaking"]
CloseReason = Literal["call_ended", "error", "user_away", "user_requested", "not_answered"]

#: Longest the greeting waits for a callee who started talking to stop (s).
CALLEE_FIRST_MAX_S = 8.0

_current_session: contextvars.ContextVar[AgentSession[Any]] = contextvars.ContextVar(
    "callfleet_agent_session"
)


def current_session() -> AgentSession[Any]:
    """The session whose tools or hooks are running (for ``await AgentTask(...)``)."""
    try:
        return _current_session.get()
    except LookupError:
        raise AgentError("no agent session is running in this task") from None


@dataclass
class UserInputTranscribed:
    transcript: str
    is_final: bool


@dataclass
class CloseEvent:
    reason: CloseReason
    error: BaseException | None = None


class _Interruption:
    """The user started talking over an interruptible speech: its audio is paused."""

    def __init__(self, handle: SpeechHandle) -> None:
        self.handle = handle
        self.confirmed = False  # the speech went on for min_interruption_duration
        self.confirm_task: asyncio.Task[None] | None = None
        self.false_task: asyncio.Task[None] | None = None


class AgentSession(EventEmitter, Generic[UserdataT]):
    def __init__(
        self,
        *,
        stt: STT | None = None,
        vad: VAD | None = None,
        llm: LLM | None = None,
        tts: TTS | None = None,
        userdata: UserdataT | None = None,
        allow_interruptions: bool | Any = NOT_GIVEN,
        min_interruption_duration: float | Any = NOT_GIVEN,
        min_interruption_words: int | Any = NOT_GIVEN,
        min_endpointing_delay: float | Any = NOT_GIVEN,
        max_endpointing_delay: float | Any = NOT_GIVEN,
        max_tool_steps: int | Any = NOT_GIVEN,
        user_away_timeout: float | Any | None = NOT_GIVEN,
        max_user_away_prompts: int | Any = NOT_GIVEN,
        false_interruption_timeout: float | Any | None = NOT_GIVEN,
        resume_false_interruption: bool | Any = NOT_GIVEN,
        preemptive_generation: bool | Any = NOT_GIVEN,
        tts_text_transforms: list[str | TextTransform] | Any = NOT_GIVEN,
        outbound_greeting: str | Any = NOT_GIVEN,
        callee_first_timeout: float | Any = NOT_GIVEN,
        max_unrecoverable_errors: int | Any = NOT_GIVEN,
        inband_dtmf: bool | Any = NOT_GIVEN,
        dtmf_to_llm: bool | Any = NOT_GIVEN,
        ivr_detection: bool | Any = NOT_GIVEN,
        ivr_goal: str | Any = NOT_GIVEN,
        dtmf_handler: DTMFHandler | None = None,
        transfer_backend: TransferBackend | None = None,
        transfer_options: TransferOptions | None = None,
        amd: AMDOptions | None = None,
    ) -> None:
        """Options are documented (with units and defaults) on ``SessionOptions``;
        an agent may change some of them while it runs (``Agent(turn_handling=...)``).
        ``transfer_backend`` dials and bridges for ``transfer_call`` (the SIP one is
        ``callfleet.sip.transfer_backend.SipTransferBackend``); ``amd`` runs
        answering-machine detection from the answer (``callfleet.agents.amd.runner``)."""
        super().__init__()
        self.options = SessionOptions().updated(
            allow_interruptions=allow_interruptions,
            min_interruption_duration=min_interruption_duration,
            min_interruption_words=min_interruption_words,
            min_endpointing_delay=min_endpointing_delay,
            max_endpointing_delay=max_endpointing_delay,
            max_tool_steps=max_tool_steps,
            user_away_timeout=user_away_timeout,
            max_user_away_prompts=max_user_away_prompts,
            false_interruption_timeout=false_interruption_timeout,
            resume_false_interruption=resume_false_interruption,
            preemptive_generation=preemptive_generation,
            tts_text_transforms=tts_text_transforms,
            outbound_greeting=outbound_greeting,
            callee_first_timeout=callee_first_timeout,
            max_unrecoverable_errors=max_unrecoverable_errors,
            inband_dtmf=inband_dtmf,
            dtmf_to_llm=dtmf_to_llm,
            ivr_detection=ivr_detection,
            ivr_goal=ivr_goal,
        )
        self.text_transforms = resolve_transforms(self.options.tts_text_transforms)
        self.stt, self.vad, self.llm, self.tts = stt, vad, llm, tts
        self.userdata = userdata
        self.call: AgentCall | None = None
        self.history = ChatContext()
        self.metrics: list[TurnMetrics] = []
        self.user_state: UserState = "listening"
        self.agent_state: AgentState = "initializing"
        self.log: logging.LoggerAdapter[logging.Logger] = logging.LoggerAdapter(log, {})
        self._stack: list[AgentActivity] = []
        self._chat: dict[int, ChatContext] = {}  # per activity: what its LLM sees
        self._recognition: AudioRecognition | None = None
        self._stt_agent: Agent | None = None
        self._interruption: _Interruption | None = None
        self._greeted_at: float | None = None
        self._callee_started = asyncio.Event()
        self._callee_stopped = asyncio.Event()
        self._errors = 0
        self._away_prompts = 0
        self._closed: asyncio.Future[CloseEvent] | None = None
        self._closing = False
        self.audio_task: asyncio.Task[None] | None = None
        self.away_task: asyncio.Task[None] | None = None
        self.start_task: asyncio.Task[None] | None = None
        self._tasks_owned: set[asyncio.Task[None]] = set()
        #: DTMF received and sent on the call (callfleet.agents.dtmf).
        self.dtmf = SessionDtmf(self)
        if dtmf_handler is not None:
            dtmf_handler.attach(self)
        #: Phone menu detection and navigation, with ``ivr_detection``.
        self.ivr: IVRMonitor | None = None
        self.transfer_backend = transfer_backend
        self.transfer_options = transfer_options
        self.amd_options = amd
        self.amd: AMDRunner | None = None

    # -- accessors ----------------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return self.call.id if self.call is not None else ""

    @property
    def current_agent(self) -> Agent:
        if not self._stack:
            raise AgentError("the session has no running agent")
        return self._stack[-1].agent

    @property
    def _activity(self) -> AgentActivity:
        if not self._stack:
            raise AgentError("the session has no running agent (call start() first)")
        return self._stack[-1]

    @property
    def current_speech(self) -> SpeechHandle | None:
        return self._stack[-1].current if self._stack else None

    def _resolve(self, agent: Agent, kind: str) -> Any:
        value = getattr(agent, kind)
        if value is NOT_GIVEN:
            value = getattr(self, kind)
        if value is None:
            raise AgentError(f"no {kind.upper()} configured for {agent.label} or the session")
        return value

    def resolve_stt(self, agent: Agent) -> STT:
        return self._resolve(agent, "stt")

    def resolve_llm(self, agent: Agent) -> LLM:
        return self._resolve(agent, "llm")

    def resolve_tts(self, agent: Agent) -> TTS:
        return self._resolve(agent, "tts")

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, agent: Agent, call: AgentCall) -> None:
        """Run ``agent`` on ``call``: returns once the call is answered and the agent
        has entered (its greeting queued), or the call ended unanswered."""
        if self.call is not None:
            raise AgentError("session already started")
        self.call = call
        self.log = logging.LoggerAdapter(log, {"call_id": call.id})
        _current_session.set(self)
        self._closed = asyncio.get_running_loop().create_future()
        vad = self._resolve(agent, "vad")
        self._recognition = AudioRecognition(self, vad.stream(), lambda: self._options_now)
        call.on("ended", self._on_call_ended)
        call.on("dtmf", self.dtmf.on_call_dtmf)
        if self.options.ivr_detection:
            self.ivr = IVRMonitor(self)
        # The greeting is never spoken into ringback: wait for the answer first.
        if not await call.wait_answered():
            await self.aclose(reason="not_answered")
            return
        await self._start_stt(agent)  # hears the callee's "hello?" before the greeting
        if self.amd_options is not None:
            self.amd = AMDRunner(self, agent, self.amd_options)
        self.audio_task = asyncio.create_task(self._read_audio(call))
        label = await self.amd.wait_decision() if self.amd is not None else None
        if self.amd is not None and self.amd.handling_machine:
            return  # a machine: no greeting (the runner hangs up or leaves the message)
        if (
            call.direction == "outbound"
            and self.options.outbound_greeting == "after_callee"
            and label is None  # AMD's decision already waited for the callee (or silence)
        ):
            await self._wait_callee_first()
        if self._closing:
            return
        await self._push_activity(agent, chat_ctx=None)
        self._greeted_at = time.perf_counter()
        self._restart_away_timer()

    async def _wait_callee_first(self) -> None:
        """Let the callee say "hello?" first: wait until they stop talking, or until
        ``callee_first_timeout`` passes without them starting."""
        try:
            await asyncio.wait_for(self._callee_started.wait(), self.options.callee_first_timeout)
        except TimeoutError:
            return
        try:
            await asyncio.wait_for(self._callee_stopped.wait(), CALLEE_FIRST_MAX_S)
        except TimeoutError:
            self.log.info("callee still talking after %s s: greeting anyway", CALLEE_FIRST_MAX_S)

    async def _read_audio(self, call: AgentCall) -> None:
        recognition = self._recognition
        assert recognition is not None
        try:
            async for frame in call.audio_in:
                if "early" in frame.flags:
                    continue  # ringback and carrier announcements are not the callee
                if self.amd is not None:
                    await self.amd.push_frame(frame)
                self.dtmf.push_audio(frame)  # in-band tones, with inband_dtmf
                await recognition.push_frame(frame)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log.exception("audio input failed")
            self.report_error(e, source="audio")

    def _on_call_ended(self, *_: Any) -> None:
        if not self._closing:
            self._spawn(self.aclose(reason="call_ended"))

    async def wait_closed(self, timeout_s: float | None = None) -> CloseEvent:
        if self._closed is None:
            raise AgentError("session was not started")
        return await asyncio.wait_for(asyncio.shield(self._closed), timeout_s)

    async def aclose(
        self, *, reason: CloseReason = "user_requested", error: BaseException | None = None
    ) -> None:
        """Stop the session (idempotent). Unless the call already ended, it is hung up
        when the session closes on its own (error, user away)."""
        if self._closing:
            if self._closed is not None:
                await asyncio.shield(self._closed)
            return
        self._closing = True
        self.log.info("agent session closing: %s", reason)
        await cancel_and_wait(self.away_task, self.audio_task)
        self.dtmf.close()
        while self._stack:
            activity = self._stack.pop()
            await activity.aclose()
        if self._recognition is not None:
            await self._recognition.aclose()
        if self.amd is not None:
            await self.amd.aclose()
        current = asyncio.current_task()
        await cancel_and_wait(*(t for t in self._tasks_owned if t is not current))
        call = self.call
        if call is not None and reason in ("error", "user_away") and not call.is_ended:
            try:
                await call.hangup()
            except Exception:
                self.log.exception("hang-up after the session closed failed")
        event = CloseEvent(reason, error)
        self.emit("close", event)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(event)

    # -- agents -------------------------------------------------------------------------------

    @property
    def _options_now(self) -> SessionOptions:
        return self._stack[-1].options if self._stack else self.options

    async def _push_activity(self, agent: Agent, *, chat_ctx: ChatContext | None) -> None:
        activity = AgentActivity(self, agent)
        base = agent._chat_ctx or chat_ctx or ChatContext()
        self._chat[id(activity)] = ChatContext(
            item
            for item in base.items
            if not (isinstance(item, ChatMessage) and item.role == "system")
        )
        self._stack.append(activity)
        if self._stt_agent is not agent:
            await self._start_stt(agent)
        activity.start()

    async def _start_stt(self, agent: Agent) -> None:
        """Feed the user's audio to ``agent``'s STT node (restarted when an agent takes
        over, since it may override the node or use another STT)."""
        recognition = self._recognition
        if recognition is None:
            return
        settings = ModelSettings(session=self)
        stt = self.resolve_stt(agent)
        await recognition.start_stt(
            lambda audio: agent.stt_node(audio, settings), streaming=stt.capabilities.streaming
        )
        self._stt_agent = agent

    async def retire_agents(self) -> None:
        """Stop every running agent (what they say is cut, nothing more is answered);
        the session goes on listening (an answering machine took the call)."""
        while self._stack:
            activity = self._stack.pop()
            await activity.aclose()

    @property
    def amd_outcome(self) -> dict[str, Any] | None:
        """Answering-machine detection's result, when the session ran it."""
        return self.amd.outcome.as_dict() if self.amd is not None else None

    async def update_agent(self, agent: Agent) -> None:
        """Hand the call to ``agent`` (it sees the conversation so far)."""
        if not self._stack:
            raise AgentError("the session has no running agent (call start() first)")
        old = self._stack.pop()
        carried = self._chat.pop(id(old), ChatContext())
        await old.aclose()
        await self._push_activity(agent, chat_ctx=carried)

    def schedule_handoff(self, agent: Agent) -> None:
        self._spawn(self.update_agent(agent))

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` in its own task (kept referenced, cancelled by ``aclose``)."""
        task = asyncio.create_task(coro)
        self._tasks_owned.add(task)
        task.add_done_callback(self._tasks_owned.discard)

    async def run_task(self, task: AgentTask[T], result: asyncio.Future[T]) -> T:
        """Run ``task`` on top of the current agent until it completes."""
        parent = self._activity
        await self._push_activity(task, chat_ctx=self._chat.get(id(parent)))
        try:
            return await result
        finally:
            if self._stack and self._stack[-1].agent is task:
                activity = self._stack.pop()
                added = self._chat.pop(id(activity), ChatContext())
                await activity.aclose(drain_s=5.0)
                parent_ctx = self._chat.get(id(parent))
                if parent_ctx is not None:
                    known = {item.id for item in parent_ctx.items}
                    parent_ctx.items.extend(i for i in added.items if i.id not in known)

    # -- conversation ---------------------------------------------------------------------------

    def chat_ctx_for(self, activity: AgentActivity, instructions: str | None) -> ChatContext:
        ctx = ChatContext([ChatMessage(role="system", content=activity.agent.instructions)])
        ctx.items.extend(self._chat.get(id(activity), ChatContext()).items)
        if instructions:
            ctx.add_message(role="system", content=instructions)
        return ctx

    def add_item(self, item: ChatItem) -> None:
        self.history.insert(item)
        if self._stack:
            self._chat.setdefault(id(self._stack[-1]), ChatContext()).insert(item)
        self.emit("conversation_item_added", item)

    def _add_before_greeting(self, message: ChatMessage) -> None:
        contexts = [self.history, *([self._chat[id(self._stack[0])]] if self._stack else [])]
        for ctx in contexts:
            first_agent = next(
                (
                    i
                    for i, item in enumerate(ctx.items)
                    if item.created_at >= message.created_at
                    or (isinstance(item, ChatMessage) and item.role == "assistant")
                ),
                len(ctx.items),
            )
            ctx.items.insert(first_agent, message)
        self.emit("conversation_item_added", message)

    def add_item_message(self, role: ChatRole, text: str, interrupted: bool = False) -> ChatMessage:
        message = ChatMessage(role=role, content=text, interrupted=interrupted)
        self.add_item(message)
        return message

    def say(
        self, text: str | AudioFrame, *, allow_interruptions: bool | None = None
    ) -> SpeechHandle:
        """Speak ``text`` (through the TTS) or play ``audio`` as is; queued after what
        the agent is already saying."""
        return self._activity.say(text, allow_interruptions=allow_interruptions)

    def generate_reply(
        self,
        *,
        instructions: str | None = None,
        user_input: str | None = None,
        tool_choice: ToolChoice = "auto",
        allow_interruptions: bool | None = None,
    ) -> SpeechHandle:
        """Ask the LLM for a reply now; ``user_input`` is added as a user message first,
        ``instructions`` apply to this reply only."""
        if user_input:
            self.add_item_message("user", user_input)
        return self._activity.generate_reply(
            instructions=instructions,
            tool_choice=tool_choice,
            allow_interruptions=allow_interruptions,
        )

    async def transfer_call(
        self, target: str, *, mode: TransferMode = "blind", summary: str | None = None
    ) -> TransferOutcome:
        """Hand the call to a human at ``target``: ``blind`` (REFER, falling back to dial
        and bridge when the trunk refuses it) or ``warm`` (hold, brief the human, bridge);
        see ``callfleet.agents.transfer``."""
        if self.transfer_backend is None:
            raise AgentError("no transfer_backend configured for this session")
        transferer = transferer_for(self, self.transfer_backend, options=self.transfer_options)
        return await transferer.transfer(target, mode=mode, summary=summary)

    async def speak_direct(
        self, text: str, *, call: AgentCall | None = None, agent: Agent | None = None
    ) -> bool:
        """Say ``text`` with ``agent``'s TTS node (default: the running agent's) straight
        into ``call``'s audio (default: the session's call), outside the speech queue:
        for what no turn of the conversation can carry (a message left on a machine, a
        transfer's briefing). ``True`` when all of it played."""
        leg = call or self.call
        out = leg.audio_out if leg is not None else None
        if leg is None or out is None or leg.is_ended:
            return False
        speaker = agent or self.current_agent
        async for frame in speaker.tts_node(once(text), ModelSettings(session=self)):
            out.write(frame)
        out.finish()
        return await out.wait_played()

    def interrupt(self, *, force: bool = False) -> None:
        """Stop what the agent is saying (``force``: even a non-interruptible speech)."""
        self._cancel_interruption(resume=False)
        if self._stack:
            self._stack[-1].interrupt_all(force=force)

    # -- state, errors, metrics ------------------------------------------------------------------

    def set_agent_state(self, state: AgentState) -> None:
        if state != self.agent_state:
            old, self.agent_state = self.agent_state, state
            self.emit("agent_state_changed", old, state)
            self._restart_away_timer()

    def _set_user_state(self, state: UserState) -> None:
        if state != self.user_state:
            old, self.user_state = self.user_state, state
            self.emit("user_state_changed", old, state)
            self._restart_away_timer()

    def on_speech_done(self, handle: SpeechHandle) -> None:
        if self._interruption is not None and self._interruption.handle is handle:
            self._cancel_interruption(resume=True)
        if self._stack and self._stack[-1].current in (None, handle):
            self.set_agent_state("listening")

    def report_error(self, error: BaseException, *, source: str) -> None:
        self.emit("error", error, source)

    def on_provider_error(self, error: BaseException) -> None:
        self._errors += 1
        self.log.error("provider error (%d in a row): %s", self._errors, error, exc_info=error)
        self.report_error(error, source="provider")
        if self._errors > self._options_now.max_unrecoverable_errors:
            self._spawn(self.aclose(reason="error", error=error))

    def on_provider_success(self) -> None:
        self._errors = 0

    def emit_metrics(self, metrics: TurnMetrics) -> None:
        self.metrics.append(metrics)
        self.emit("metrics_collected", metrics)

    # -- user away ---------------------------------------------------------------------------------

    def _restart_away_timer(self) -> None:
        if self.away_task is not None:
            self.away_task.cancel()
            self.away_task = None
        timeout = self._options_now.user_away_timeout
        if (
            timeout is None
            or self._closing
            or not self._stack
            or self.user_state == "speaking"
            or self.agent_state != "listening"
        ):
            return
        self.away_task = asyncio.create_task(self._away_after(timeout))

    async def _away_after(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        self.away_task = None
        self._away_prompts += 1
        self._set_user_state("away")
        limit = self._options_now.max_user_away_prompts
        if limit and self._away_prompts > limit:
            await self.aclose(reason="user_away")
            return
        try:
            await self.current_agent.on_user_away()
        except Exception as e:
            self.log.exception("on_user_away failed")
            self.report_error(e, source="on_user_away")

    # -- RecognitionHooks -------------------------------------------------------------------------

    def on_start_of_speech(self, event: VADEvent) -> None:
        self._away_prompts = 0
        if self._stack:
            self._stack[-1].cancel_prefetch()  # the user goes on: the words will change
        self._set_user_state("speaking")
        self._callee_started.set()
        speech = self.current_speech
        options = self._options_now
        if (
            speech is None
            or speech.done()
            or not speech.allow_interruptions
            or not options.allow_interruptions
            or self.agent_state != "speaking"
            or self._interruption is not None
            or self.call is None
            or self.call.audio_out is None
        ):
            return
        # Stop the agent's voice now (within one frame); decide later whether this is
        # a real interruption or a cough.
        self.call.audio_out.pause()
        interruption = _Interruption(speech)
        wait_s = max(0.0, options.min_interruption_duration - event.speech_duration_s)
        interruption.confirm_task = asyncio.create_task(self._confirm_after(interruption, wait_s))
        self._interruption = interruption

    async def _confirm_after(self, interruption: _Interruption, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        if self._options_now.min_interruption_words == 0:
            self._confirm_interruption(interruption)

    def _confirm_interruption(self, interruption: _Interruption) -> None:
        if interruption.confirmed or self._interruption is not interruption:
            return
        interruption.confirmed = True
        options = self._options_now
        if options.resume_false_interruption and options.false_interruption_timeout is not None:
            return  # stays paused until words arrive (interrupt) or do not (resume)
        self._interrupt_for_real()

    def _interrupt_for_real(self) -> None:
        interruption, self._interruption = self._interruption, None
        if interruption is None:
            return
        for task in (interruption.confirm_task, interruption.false_task):
            if task is not None:
                task.cancel()
        if not interruption.handle.done():
            interruption.handle.interrupt(force=True)

    def _cancel_interruption(self, *, resume: bool) -> None:
        interruption, self._interruption = self._interruption, None
        if interruption is None:
            return
        for task in (interruption.confirm_task, interruption.false_task):
            if task is not None:
                task.cancel()
        if resume and self.call is not None and self.call.audio_out is not None:
            self.call.audio_out.resume()

    def _false_interruption(self) -> None:
        interruption = self._interruption
        if interruption is None:
            return
        resume = self._options_now.resume_false_interruption
        self.log.info("false interruption of %s (resumed: %s)", interruption.handle.id, resume)
        if resume:
            self._cancel_interruption(resume=True)
        else:
            self._interrupt_for_real()
        self.emit("agent_false_interruption", interruption.handle)

    def on_end_of_speech(self, event: VADEvent) -> None:
        self._set_user_state("listening")
        self._callee_stopped.set()
        interruption = self._interruption
        if interruption is None:
            return
        if not interruption.confirmed:
            # Too short to count (min_interruption_duration): carry on talking.
            self._cancel_interruption(resume=True)
            return
        timeout = self._options_now.false_interruption_timeout
        if timeout is not None:
            interruption.false_task = asyncio.create_task(self._false_after(timeout))

    async def _false_after(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        self._false_interruption()

    def on_transcript(self, text: str, *, is_final: bool) -> None:
        self.emit("user_input_transcribed", UserInputTranscribed(text, is_final))
        if is_final and self.amd is not None:
            self.amd.push_transcript(text)
        interruption = self._interruption
        if interruption is None:
            return
        words = len(text.split())
        needed = self._options_now.min_interruption_words
        if words >= max(needed, 1):
            if not interruption.confirmed:
                self._confirm_interruption(interruption)
            if self._interruption is interruption and (is_final or words >= needed > 0):
                self._interrupt_for_real()

    def on_empty_turn(self) -> None:
        if self._interruption is not None and self._interruption.confirmed:
            self._false_interruption()

    def on_transcript_ready(self, text: str) -> None:
        if self._options_now.preemptive_generation and self._greeted_at is not None:
            self._activity.prefetch(text)

    def on_end_of_turn(self, turn: UserTurn) -> None:
        self._spawn(self._user_turn(turn))

    async def _user_turn(self, turn: UserTurn) -> None:
        self._interrupt_for_real()
        if self.ivr is not None and self.ivr.take_turn(turn.text):
            return  # a phone menu: the IVR navigator has the call now
        interrupted = self.current_speech
        if interrupted is not None and interrupted.interrupt_requested and not interrupted.done():
            # Its partial text goes into the conversation before the words that cut it.
            try:
                await asyncio.wait_for(interrupted.wait_for_playout(), 2.0)
            except TimeoutError:
                self.log.warning("interrupted speech %s did not stop in 2 s", interrupted.id)
        if self._greeted_at is None or turn.end_of_speech_at < self._greeted_at:
            # The callee's "hello?" before the greeting: heard (placed before it in the
            # conversation), not answered.
            self._add_before_greeting(ChatMessage(role="user", content=turn.text))
            return
        message = self.add_item_message("user", turn.text)
        metrics = TurnMetrics(speech_id="")
        metrics.stt_delay_ms = 1000 * max(0.0, turn.transcript_at - turn.end_of_speech_at)
        metrics.end_of_turn_delay_ms = 1000 * (turn.committed_at - turn.end_of_speech_at)
        await self._reply_to_turn(message, turn, metrics)

    async def _reply_to_turn(
        self, message: ChatMessage, turn: UserTurn, metrics: TurnMetrics
    ) -> None:
        if not self._stack:
            return
        activity = self._stack[-1]
        turn_ctx = self.chat_ctx_for(activity, None)
        try:
            await activity.agent.on_user_turn_completed(turn_ctx, message)
        except StopResponse:
            return
        except Exception as e:
            self.log.exception("on_user_turn_completed failed")
            self.report_error(e, source="on_user_turn_completed")
        if activity not in self._stack:
            return
        handle = activity.generate_reply(
            metrics=metrics,
            end_of_speech_at=turn.end_of_speech_at,
            vad_end_at=turn.vad_end_at,
            user_text=message.content,
        )
        metrics.speech_id = handle.id
