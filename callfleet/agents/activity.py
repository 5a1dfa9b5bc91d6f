"""``AgentActivity``: one Agent running in a session: its speech queue, its replies
(LLM → tools → TTS → the call's playout) and its interruption.

Speeches play one at a time in the order they were created. A reply streams the LLM's
text into the agent's ``tts_node`` as it arrives, so the first sentence is on the wire
while the rest is still being written; tool calls are run after the text, and their
results go back to the LLM (up to ``max_tool_steps`` rounds).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callfleet.agents.agent import Agent, AgentTask, ModelSettings
from callfleet.agents.aio import Channel, cancel_and_wait, once
from callfleet.agents.chat import ChatChunk, ChatContext, FunctionCall, FunctionCallOutput
from callfleet.agents.options import SessionOptions
from callfleet.agents.providers.base import ToolChoice
from callfleet.agents.speech import SpeechHandle, TurnMetrics
from callfleet.agents.tools import FunctionTool, RunContext, ToolError
from callfleet.media.frame import PCM16, AudioFrame

if TYPE_CHECKING:
    from callfleet.agents.session import AgentSession

log = logging.getLogger(__name__)


@dataclass
class _Reply:
    """What a generated reply needs: the request, and where its metrics go."""

    instructions: str | None = None
    tool_choice: ToolChoice = "auto"
    metrics: TurnMetrics | None = None
    end_of_speech_at: float | None = None
    vad_end_at: float | None = None
    #: The user's words this replies to (to use a preemptive generation for them).
    user_text: str | None = None


@dataclass
class _Progress:
    """How much of a speech's audio went out (kept current while it plays, so a speech
    cut off by a hang-up still knows what was said)."""

    pushed_ms: float = 0.0
    unplayed_ms: float = 0.0

    @property
    def fraction(self) -> float:
        if self.pushed_ms <= 0:
            return 1.0
        return max(0.0, min(1.0, (self.pushed_ms - self.unplayed_ms) / self.pushed_ms))


class _Prefetch:
    """An LLM request started on the final transcript before the turn was committed
    (``preemptive_generation``): its chunks are buffered until the reply claims them."""

    def __init__(self, text: str, source: AsyncIterator[ChatChunk]) -> None:
        self.text = text
        self.started_at = time.perf_counter()
        self.chunks: Channel[ChatChunk] = Channel()
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run(source))

    async def _run(self, source: AsyncIterator[ChatChunk]) -> None:
        try:
            async for chunk in source:
                self.chunks.send(chunk)
        except Exception as e:
            self.error = e
        finally:
            self.chunks.close()

    async def replay(self) -> AsyncIterator[ChatChunk]:
        async for chunk in self.chunks:
            yield chunk
        if self.error is not None:
            raise self.error


class AgentActivity:
    def __init__(self, session: AgentSession, agent: Agent) -> None:
        self.session = session
        self.agent = agent
        self.options: SessionOptions = session.options.updated(**agent.turn_handling)
        self.tools: dict[str, FunctionTool] = {t.name: t for t in agent.tools}
        self._queue: Channel[tuple[SpeechHandle, Any]] = Channel()
        self.current: SpeechHandle | None = None
        self.scheduler_task: asyncio.Task[None] | None = None
        self.enter_task: asyncio.Task[None] | None = None
        self._started = False
        self._prefetch: _Prefetch | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return self.session.log

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.agent._session = self.session
        self.scheduler_task = asyncio.create_task(self._schedule())
        self.enter_task = asyncio.create_task(self._run_hook(self.agent.on_enter(), "on_enter"))
        self._started = True

    async def _run_hook(self, coro: Any, name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log.exception("%s.%s failed", self.agent.label, name)
            self.session.report_error(e, source=name)

    async def aclose(self, *, drain_s: float = 0.0) -> None:
        """Stop: queued speeches are dropped; the playing one is interrupted, or with
        ``drain_s`` given the time to finish (a task that completed from a tool lets the
        tool round end cleanly)."""
        if not self._started:
            return
        self._started = False
        self._queue.close()
        current = self.current
        if drain_s and current is not None and not current.done():
            try:
                await asyncio.wait_for(current.wait_for_playout(), drain_s)
            except TimeoutError:
                pass
        if self.current is not None and not self.current.done():
            self.current.interrupt(force=True)
        self.cancel_prefetch()
        await cancel_and_wait(self.enter_task)
        await self._run_hook(self.agent.on_exit(), "on_exit")
        await cancel_and_wait(self.scheduler_task)

    # -- speeches ---------------------------------------------------------------------------

    def say(
        self, source: str | PCM16 | AudioFrame, *, allow_interruptions: bool | None = None
    ) -> SpeechHandle:
        handle = self._new_handle("say", allow_interruptions)
        self._queue.send((handle, ("say", source)))
        return handle

    def generate_reply(
        self,
        *,
        instructions: str | None = None,
        tool_choice: ToolChoice = "auto",
        allow_interruptions: bool | None = None,
        metrics: TurnMetrics | None = None,
        end_of_speech_at: float | None = None,
        vad_end_at: float | None = None,
        user_text: str | None = None,
    ) -> SpeechHandle:
        handle = self._new_handle(
            "user_turn" if metrics is not None else "generate_reply", allow_interruptions
        )
        reply = _Reply(instructions, tool_choice, metrics, end_of_speech_at, vad_end_at, user_text)
        self._queue.send((handle, ("reply", reply)))
        return handle

    def _new_handle(self, source: str, allow_interruptions: bool | None) -> SpeechHandle:
        allow = (
            self.options.allow_interruptions
            if allow_interruptions is None
            else (allow_interruptions)
        )
        handle = SpeechHandle(allow_interruptions=allow, source=source)
        self.session.emit("speech_created", handle)
        return handle

    def prefetch(self, user_text: str) -> None:
        """Start the LLM on ``user_text`` now (the turn is not committed yet); a reply
        to the same words uses what it produced."""
        self.cancel_prefetch()
        chat_ctx = self.session.chat_ctx_for(self, None)
        chat_ctx.add_message(role="user", content=user_text)
        settings = ModelSettings(session=self.session)
        source = self.agent.llm_node(chat_ctx, list(self.tools.values()), settings)
        self._prefetch = _Prefetch(user_text, source)

    def cancel_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.task.cancel()
            self._prefetch = None

    def _claim_prefetch(self, reply: _Reply) -> _Prefetch | None:
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is None:
            return None
        if reply.user_text is not None and prefetch.text == reply.user_text:
            return prefetch
        prefetch.task.cancel()
        return None

    def interrupt_all(self, *, force: bool = False) -> None:
        """Interrupt the playing speech (if allowed) — queued ones are dropped with it."""
        if self.current is not None and not self.current.done():
            if self.current.allow_interruptions or force:
                self.current.interrupt(force=force)

    async def _schedule(self) -> None:
        async for handle, (kind, payload) in self._queue:
            if handle.interrupt_requested:
                handle._mark_done(interrupted=True, text="")
                continue
            self.current = handle
            try:
                if kind == "say":
                    await self._play_say(handle, payload)
                else:
                    await self._play_reply(handle, payload)
            except asyncio.CancelledError:
                handle._mark_done(interrupted=True, text=handle.text)
                raise
            except Exception as e:
                self.log.exception("speech %s failed", handle.id)
                self.session.report_error(e, source="speech")
            finally:
                handle._mark_done(interrupted=handle.interrupt_requested, text=handle.text)
                self.current = None
                self.session.on_speech_done(handle)

    # -- playing ------------------------------------------------------------------------------

    async def _play_say(self, handle: SpeechHandle, source: str | PCM16 | AudioFrame) -> None:
        if isinstance(source, str):
            text = source
            audio = self.agent.tts_node(once(text), ModelSettings(session=self.session))
        else:
            text = ""
            frame = source if isinstance(source, AudioFrame) else AudioFrame(source, 8000)
            audio = once(frame)
        progress = _Progress()
        try:
            await self._play(handle, audio, progress)
        finally:  # also when cancelled by a hang-up: the transcript keeps what was said
            if text:
                handle.text = _played_text(text, progress.fraction).strip()
                cut = handle.interrupt_requested or progress.fraction < 1.0
                self.session.add_item_message("assistant", handle.text, cut)

    async def _play(
        self,
        handle: SpeechHandle,
        audio: AsyncIterator[AudioFrame],
        progress: _Progress,
        *,
        reply: _Reply | None = None,
        tts_started_at: list[float] | None = None,
    ) -> None:
        """Push ``audio`` to the call until it ends or the speech is interrupted;
        ``progress`` tells how much of it was played."""
        call = self.session.call
        out = call.audio_out if call is not None else None
        if out is None:
            progress.pushed_ms, progress.unplayed_ms = 1.0, 1.0
            return
        first_start: asyncio.Future[float] | None = None

        async def push() -> None:
            nonlocal first_start
            async for frame in audio:
                if first_start is None:
                    first_start = out.next_start()
                    if tts_started_at and reply is not None and reply.metrics is not None:
                        reply.metrics.tts_ttfb_ms = 1000 * (time.perf_counter() - tts_started_at[0])
                    self.session.set_agent_state("speaking")
                out.write(frame)
                progress.pushed_ms += frame.duration_ms
            out.finish()

        push_task = asyncio.create_task(push())
        interrupt_task = asyncio.create_task(handle.wait_interrupt_requested())
        try:
            await asyncio.wait({push_task, interrupt_task}, return_when=asyncio.FIRST_COMPLETED)
            if push_task.done() and push_task.exception() is None:
                played_task = asyncio.create_task(out.wait_played())
                await asyncio.wait(
                    {played_task, interrupt_task}, return_when=asyncio.FIRST_COMPLETED
                )
                played_task.cancel()
            elif push_task.done():
                raise push_task.exception()  # type: ignore[misc]
        finally:
            # Interrupted, or cancelled because the call ended: what is still queued
            # was never heard.
            progress.unplayed_ms = out.queued_ms
            if handle.interrupt_requested:
                out.clear()
            await cancel_and_wait(push_task, interrupt_task)
            if first_start is not None:
                if reply is not None and reply.metrics is not None and first_start.done():
                    self._note_first_audio(reply, first_start.result())
                first_start.cancel()

    def _note_first_audio(self, reply: _Reply, at: float) -> None:
        metrics = reply.metrics
        assert metrics is not None
        if reply.end_of_speech_at is not None:
            metrics.e2e_latency_ms = 1000 * (at - reply.end_of_speech_at)
        if reply.vad_end_at is not None:
            metrics.vad_to_audio_ms = 1000 * (at - reply.vad_end_at)

    # -- replies --------------------------------------------------------------------------

    async def _play_reply(self, handle: SpeechHandle, reply: _Reply) -> None:
        tool_choice = reply.tool_choice
        steps = 0
        spoken: list[str] = []
        while True:
            self.session.set_agent_state("thinking")
            chat_ctx = self.session.chat_ctx_for(self, reply.instructions)
            tools = [] if tool_choice == "none" else list(self.tools.values())
            outcome = await self._one_round(handle, reply, chat_ctx, tools, tool_choice)
            if outcome is None:  # failed or interrupted
                break
            text, calls = outcome
            if text:
                spoken.append(text)
            if handle.interrupt_requested or not calls:
                break
            handoff, needs_reply = await self._run_tools(handle, calls)
            if isinstance(self.agent, AgentTask) and self.agent.done:
                break  # the task has its result: the agent that awaited it speaks next
            if handoff is not None:
                self.session.schedule_handoff(handoff)
                break
            steps += 1
            if not needs_reply or handle.interrupt_requested:
                break
            if steps >= self.options.max_tool_steps:
                tool_choice = "none"  # one last round to speak the results, no more tools
            reply.metrics = None  # metrics describe the first response to the user only
        handle.text = " ".join(spoken)

    async def _one_round(
        self,
        handle: SpeechHandle,
        reply: _Reply,
        chat_ctx: ChatContext,
        tools: list[FunctionTool],
        tool_choice: ToolChoice,
    ) -> tuple[str, list[FunctionCall]] | None:
        settings = ModelSettings(tool_choice=tool_choice, session=self.session)
        text_out: Channel[str] = Channel()
        tts_in: Channel[str] = Channel()
        calls: list[FunctionCall] = []
        spoken: list[str] = []
        tts_started_at: list[float] = []
        requested_at = time.perf_counter()
        error: list[BaseException] = []

        prefetch = self._claim_prefetch(reply) if tool_choice == "auto" else None
        if prefetch is not None:
            requested_at = prefetch.started_at
            source = prefetch.replay()
        else:
            source = self.agent.llm_node(chat_ctx, tools, settings)

        async def read_llm() -> None:
            first = True
            try:
                async for chunk in source:
                    if first and (chunk.delta or chunk.tool_calls):
                        first = False
                        if reply.metrics is not None:
                            reply.metrics.llm_ttft_ms = 1000 * (time.perf_counter() - requested_at)
                    if chunk.delta:
                        text_out.send(chunk.delta)
                    calls.extend(chunk.tool_calls)
            except Exception as e:
                error.append(e)
            finally:
                text_out.close()

        async def transcribe() -> None:
            async for delta in self.agent.transcription_node(aiter(text_out), settings):
                spoken.append(delta)
                if not tts_started_at:
                    tts_started_at.append(time.perf_counter())
                tts_in.send(delta)
            tts_in.close()

        llm_task = asyncio.create_task(read_llm())
        text_task = asyncio.create_task(transcribe())
        audio = self.agent.tts_node(aiter(tts_in), settings)
        progress = _Progress()
        try:
            await self._play(handle, audio, progress, reply=reply, tts_started_at=tts_started_at)
        except asyncio.CancelledError:
            await cancel_and_wait(llm_task, text_task)
            text = _played_text("".join(spoken), progress.fraction).strip()
            if text:  # cut off by a hang-up: keep what was said
                self.session.add_item_message("assistant", text, interrupted=True)
            raise
        except Exception as e:
            error.append(e)
            progress.unplayed_ms = progress.pushed_ms
        finally:
            if handle.interrupt_requested:
                await cancel_and_wait(llm_task, text_task)
            else:
                await asyncio.gather(llm_task, text_task, return_exceptions=True)
        text = _played_text("".join(spoken), progress.fraction).strip()
        if error:
            self.session.on_provider_error(error[0])
            if text:
                self.session.add_item_message("assistant", text, interrupted=True)
            return None
        self.session.on_provider_success()
        if reply.metrics is not None:
            reply.metrics.interrupted = handle.interrupt_requested
            self.session.emit_metrics(reply.metrics)
        if text:
            self.session.add_item_message("assistant", text, handle.interrupt_requested)
        if handle.interrupt_requested:
            return None
        if not text and not calls and self.session.call is not None:
            self.session.set_agent_state("listening")
        return text, calls

    async def _run_tools(
        self, handle: SpeechHandle, calls: list[FunctionCall]
    ) -> tuple[Agent | None, bool]:
        """Runs the calls (concurrently); returns (an agent to hand over to, whether the
        LLM should speak about the results)."""
        for call in calls:
            self.session.add_item(call)
        results = await asyncio.gather(*(self._run_tool(call) for call in calls))
        outputs = [out for out, _ in results]
        handoffs = [agent for _, agent in results if agent is not None]
        for out in outputs:
            self.session.add_item(out)
        self.session.emit("function_tools_executed", calls, outputs)
        handoff = handoffs[0] if handoffs else None
        if len(handoffs) > 1:
            self.log.warning("several tools handed over at once; using %s", handoff)
        needs_reply = any(out.output != "" for out in outputs)
        return handoff, needs_reply

    async def _run_tool(self, call: FunctionCall) -> tuple[FunctionCallOutput, Agent | None]:
        tool = self.tools.get(call.name)
        if tool is None:
            message = f"there is no tool named {call.name!r}"
            return FunctionCallOutput(call.call_id, call.name, message, is_error=True), None
        context: RunContext[Any] = RunContext(session=self.session, function_call=call)
        try:
            result = await tool.invoke(context, call.arguments)
        except ToolError as e:
            return FunctionCallOutput(call.call_id, call.name, str(e), is_error=True), None
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log.exception("tool %s failed", call.name)
            output = f"the tool failed: {type(e).__name__}"
            return FunctionCallOutput(call.call_id, call.name, output, is_error=True), None
        agent: Agent | None = None
        if isinstance(result, Agent):
            agent, result = result, None
        elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Agent):
            agent, result = result
        return FunctionCallOutput(call.call_id, call.name, _tool_output(result)), agent


def _tool_output(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, default=str)
    except TypeError:
        return str(result)


def _played_text(text: str, fraction: float) -> str:
    """The part of ``text`` that was spoken when ``fraction`` of its audio was played
    (cut at a word boundary; proportional to characters, which is close enough for a
    transcript)."""
    if fraction >= 1.0:
        return text
    cut = int(len(text) * fraction)
    space = text.rfind(" ", 0, cut + 1)
    return text[: space if space > 0 else 0].rstrip()
