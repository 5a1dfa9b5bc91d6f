"""``Agent``: the persona of a call (instructions, tools, providers, hooks and nodes),
and ``AgentTask[T]``: a sub-agent that completes with a typed result.

As in LiveKit Agents, an Agent holds no runtime state of its own: the session runs it
in an activity. Subclasses override hooks (``on_enter``, ``on_exit``,
``on_user_turn_completed``) and nodes (``stt_node``, ``llm_node``, ``tts_node``,
``transcription_node``); the default node implementations are the ``default_*``
module functions, which an override may call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from callfleet.agents.chat import ChatChunk, ChatContext, ChatMessage
from callfleet.agents.errors import AgentError
from callfleet.agents.options import NOT_GIVEN, SessionOptions
from callfleet.agents.providers.base import LLM, STT, TTS, VAD, SpeechEvent, ToolChoice
from callfleet.agents.recognition import open_stt_stream
from callfleet.agents.tools import FunctionTool, as_tool, tools_of
from callfleet.agents.transforms import SentenceChunker
from callfleet.media.frame import AudioFrame

if TYPE_CHECKING:
    from callfleet.agents.session import AgentSession

T = TypeVar("T")


class Agent:
    def __init__(
        self,
        *,
        instructions: str,
        tools: Sequence[Any] = (),
        chat_ctx: ChatContext | None = None,
        stt: STT | Any = NOT_GIVEN,
        vad: VAD | Any = NOT_GIVEN,
        llm: LLM | Any = NOT_GIVEN,
        tts: TTS | Any = NOT_GIVEN,
        turn_handling: Mapping[str, Any] | None = None,
        first_message: str | None = None,
    ) -> None:
        """
        Args:
            instructions: the system prompt.
            tools: extra tools (``@function_tool`` functions or ``FunctionTool``s); the
                agent's own ``@function_tool`` methods are added.
            chat_ctx: the conversation to start from; default: the session's history.
            stt, vad, llm, tts: providers for this agent; default: the session's.
            turn_handling: session options this agent changes while it runs (e.g.
                ``{"allow_interruptions": False}``); names as in ``SessionOptions``.
            first_message: what the default ``on_enter`` says; ``None``: it says
                nothing and waits for the user.
        """
        self.instructions = instructions
        self.first_message = first_message
        self._tools = [as_tool(t) for t in tools] + tools_of(self)
        names = [t.name for t in self._tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"agent has several tools named {duplicates}")
        self._chat_ctx = chat_ctx
        self.stt, self.vad, self.llm, self.tts = stt, vad, llm, tts
        self.turn_handling = dict(turn_handling or {})
        SessionOptions().updated(**self.turn_handling)  # unknown names fail here, not later
        self._session: AgentSession | None = None

    # -- runtime accessors -------------------------------------------------------------

    @property
    def session(self) -> AgentSession:
        if self._session is None:
            raise AgentError(f"{type(self).__name__} is not running in a session")
        return self._session

    @property
    def tools(self) -> list[FunctionTool]:
        return list(self._tools)

    @property
    def label(self) -> str:
        return type(self).__name__

    # -- hooks -------------------------------------------------------------------------

    async def on_enter(self) -> None:
        """The agent took over the call. Default: say ``first_message`` if set."""
        if self.first_message:
            await self.session.say(self.first_message).wait_for_playout()

    async def on_exit(self) -> None:
        """The agent is about to hand the call over (or the session ends)."""

    async def on_user_turn_completed(self, turn_ctx: ChatContext, new_message: ChatMessage) -> None:
        """The user finished a turn; edit ``new_message`` (or ``turn_ctx``) before the
        LLM sees it. Raise ``StopResponse`` to skip the reply."""

    async def on_user_away(self) -> None:
        """The user has been silent for ``user_away_timeout``. Default: ask whether they
        are still there."""
        await self.session.generate_reply(
            instructions="The user has been silent for a while. Briefly ask whether they "
            "are still there."
        ).wait_for_playout()

    # -- nodes -------------------------------------------------------------------------

    async def stt_node(
        self, audio: AsyncIterable[AudioFrame], model_settings: ModelSettings
    ) -> AsyncIterator[SpeechEvent]:
        """Speech events from the user's audio (streaming STT providers only)."""
        async for event in default_stt_node(self, audio, model_settings):
            yield event

    async def llm_node(
        self, chat_ctx: ChatContext, tools: list[FunctionTool], model_settings: ModelSettings
    ) -> AsyncIterator[ChatChunk]:
        async for chunk in default_llm_node(self, chat_ctx, tools, model_settings):
            yield chunk

    async def tts_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterator[AudioFrame]:
        async for frame in default_tts_node(self, text, model_settings):
            yield frame

    async def transcription_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncIterator[str]:
        """The agent's text as it should appear in the transcript (default: as is)."""
        async for delta in text:
            yield delta


class ModelSettings:
    """Per-request settings the session passes to nodes."""

    def __init__(self, *, tool_choice: ToolChoice = "auto", session: AgentSession) -> None:
        self.tool_choice = tool_choice
        self.session = session


class StopResponse(Exception):
    """Raised from ``on_user_turn_completed`` to not reply to this turn."""


# -- default node implementations -----------------------------------------------------


async def default_stt_node(
    agent: Agent, audio: AsyncIterable[AudioFrame], settings: ModelSettings
) -> AsyncIterator[SpeechEvent]:
    stream = open_stt_stream(settings.session.resolve_stt(agent))
    try:

        async def pump() -> None:
            async for frame in audio:
                stream.push_frame(frame)
            stream.end_input()

        pump_task = asyncio.create_task(pump())
        try:
            async for event in stream:
                yield event
        finally:
            pump_task.cancel()
    finally:
        await stream.aclose()


async def default_llm_node(
    agent: Agent, chat_ctx: ChatContext, tools: list[FunctionTool], settings: ModelSettings
) -> AsyncIterator[ChatChunk]:
    llm = settings.session.resolve_llm(agent)
    async for chunk in llm.chat(chat_ctx=chat_ctx, tools=tools, tool_choice=settings.tool_choice):
        yield chunk


async def default_tts_node(
    agent: Agent, text: AsyncIterable[str], settings: ModelSettings
) -> AsyncIterator[AudioFrame]:
    """Sentence by sentence: the first sentence is synthesized and played while the
    LLM is still writing the next."""
    tts = settings.session.resolve_tts(agent)
    transforms = settings.session.text_transforms
    chunker = SentenceChunker()

    async def sentences() -> AsyncIterator[str]:
        async for delta in text:
            for sentence in chunker.push(delta):
                yield sentence
        for sentence in chunker.flush():
            yield sentence

    async for sentence in sentences():
        for transform in transforms:
            sentence = transform(sentence)
        if sentence.strip():
            async for frame in tts.synthesize(sentence.strip()):
                yield frame


class AgentTask(Agent, Generic[T]):
    """An agent that runs until it calls ``complete(result)``; ``await task`` (in a tool
    or a hook of the running agent) hands the call to it and returns the result, then
    gives the call back."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._result: asyncio.Future[T] | None = None

    def complete(self, result: T | BaseException) -> None:
        if self._result is None:
            raise AgentError(f"{self.label} completed before it was started")
        if self._result.done():
            return
        if isinstance(result, BaseException):
            self._result.set_exception(result)
        else:
            self._result.set_result(result)

    @property
    def done(self) -> bool:
        return self._result is not None and self._result.done()

    def __await__(self) -> Any:
        return self._run().__await__()

    async def _run(self) -> T:
        from callfleet.agents.session import current_session

        session = current_session()
        self._result = asyncio.get_running_loop().create_future()
        return await session.run_task(self, self._result)
