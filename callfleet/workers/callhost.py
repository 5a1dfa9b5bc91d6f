"""The call host: one per call-host process, a ``SipEndpoint`` on its own asyncio loop.

Celery's threads pool runs ``place_call`` tasks; each hands its attempt to the host's
loop and blocks until the call is over. An attempt goes:
load (skip unless queued) → pacing slots (campaign and trunk concurrency leases, then
calls-per-second tokens) → claim (compare-and-set queued → dialing; only the winner
dials) → INVITE → state updates and lease renewal while the call lives → the outcome,
its retry decision and its webhook, in one transaction.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callfleet.agents.amd.runner import AMDAction, AMDOptions
from callfleet.agents.config import AgentConfigError, AgentDefinition
from callfleet.agents.errors import AgentError
from callfleet.agents.espeak import TtsError, synthesize
from callfleet.agents.runner import AgentRun, run_agent
from callfleet.agents.session import AgentSession
from callfleet.agents.transfer import TransferOutcome
from callfleet.dialer import state
from callfleet.dialer.commands import CallCommand, channel_of, reply
from callfleet.dialer.db import make_engine, make_sessionmaker, transaction, utcnow
from callfleet.dialer.models import (
    AgentConfig,
    AttemptState,
    CallAttempt,
    CallEvent,
    Campaign,
    Contact,
    TrunkRecord,
)
from callfleet.dialer.pacing import Lease, LeasedSemaphore, TokenBucket
from callfleet.dialer.retry import VOICEMAIL
from callfleet.dialer.scheduler import claim_for_dial, record_outcome, withdraw
from callfleet.dialer.webhooks import enqueue as enqueue_webhook
from callfleet.settings import Settings
from callfleet.sip.call import Call
from callfleet.sip.config import EndpointConfig, Transport, TransportSpec, Trunk
from callfleet.sip.endpoint import IncomingCall, SipEndpoint
from callfleet.sip.errors import CapacityError, SipError
from callfleet.sip.status import CallState
from callfleet.sip.transfer_backend import SipTransferBackend
from callfleet.workers.agent import (
    AgentPlan,
    PlaybackAgentConfig,
    VoiceAgentConfig,
    agent_plan,
    run_playback_agent,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


#: Attempts at storing an outcome before giving up (with backoff between them).
FINISH_RETRIES = 4


class PacingTimeout(Exception):
    """No pacing slot within the wait: the task is retried later (the attempt stays
    queued, nothing was dialled)."""


@dataclass
class AttemptPlan:
    attempt_id: str
    tenant_id: str
    campaign_id: str
    contact_id: str
    phone: str
    trunk: Trunk | None
    campaign_cps: float
    campaign_concurrency: int
    #: Answering-machine detection for voice agents: the campaign's action and message
    #: (``None``: no detection, e.g. inbound calls).
    amd: AMDOptions | None = None
    trunk_cps: float | None = None
    trunk_concurrency: int | None = None
    agent: AgentPlan = field(default_factory=PlaybackAgentConfig)


class CallHost:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="callhost-loop", daemon=True
        )
        self.endpoint: SipEndpoint | None = None
        self.redis: Redis | None = None
        self._engine = make_engine(settings.database_url)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self._engine)
        self._trunks: dict[str, Trunk] = {}
        #: Live calls of this host by attempt id, for live-call commands.
        self._live: dict[str, tuple[Call, str]] = {}  # attempt id -> (call, tenant id)
        self._listener_task: asyncio.Task[None] | None = None
        self._prewarm_task: asyncio.Task[None] | None = None
        self._inbound_tasks: set[asyncio.Task[None]] = set()
        #: Voice agent definitions by agent config id (with the definition they were
        #: built from): their providers, and so the offline models, load once per host.
        self._definitions: dict[str, tuple[dict[str, Any], AgentDefinition]] = {}
        #: Agent sessions of live calls by attempt id (the ``say`` command uses them).
        self._sessions: dict[str, AgentSession[Any]] = {}
        #: Per live attempt: its recording file, and the transfers made on it.
        self._recordings: dict[str, str] = {}
        self._transfers: dict[str, list[dict[str, Any]]] = {}

    # -- lifecycle (called from Celery's threads) ----------------------------------------

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        self._run(self._start(), timeout_s)

    async def _start(self) -> None:
        s = self.settings
        spec = TransportSpec(
            Transport.UDP, s.sip_bind, s.sip_port, public_address=s.sip_public_address
        )
        self.endpoint = SipEndpoint(EndpointConfig(transports=(spec,)))
        await self.endpoint.start()
        self.endpoint.on_incoming(self._on_incoming)
        self.redis = Redis.from_url(s.redis_url)
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(channel_of(s.worker_id))  # fails here when Redis is down
        self._listener_task = asyncio.ensure_future(self._listen(pubsub))
        self._prewarm_task = asyncio.ensure_future(self._prewarm())
        log.info(
            "call host %s up on SIP port %d, capacity %d",
            s.worker_id,
            self.endpoint.transport_port(),
            self.endpoint.capacity,
        )

    async def _prewarm(self) -> None:
        """Load the voice agents' models now, in the background, so the first calls do
        not wait for them (a greeting delayed by seconds of model loading)."""
        configs = await self._db(
            lambda s: [(a.id, dict(a.definition)) for a in s.scalars(select(AgentConfig))]
        )
        for config_id, definition in configs:
            plan = VoiceAgentConfig(config_id, definition) if "instructions" in definition else None
            if plan is None:
                continue
            try:
                await self._definition(plan).prewarm()
            except (AgentConfigError, AgentError) as e:
                log.error("agent config %s cannot run: %s", config_id, e)
            except Exception:
                log.exception("loading the models of agent config %s failed", config_id)

    def stop(self, drain_timeout_s: float = 60.0) -> None:
        """Let live calls finish (up to ``drain_timeout_s``), then shut down."""
        if not self._thread.is_alive():
            return
        try:
            self._run(self._stop(drain_timeout_s), drain_timeout_s + 15)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self._engine.dispose()

    async def _stop(self, drain_timeout_s: float) -> None:
        if self._listener_task is not None:
            self._listener_task.cancel()
        if self._prewarm_task is not None:
            self._prewarm_task.cancel()
        if self.endpoint is not None:
            try:
                await self.endpoint.wait_idle(drain_timeout_s)
            except TimeoutError:
                log.warning("calls still up after %s s of draining: hanging up", drain_timeout_s)
            await self.endpoint.aclose()
        for _, definition in self._definitions.values():
            await definition.aclose()
        if self.redis is not None:
            await self.redis.aclose()

    def place(self, attempt_id: str) -> str:
        """Run one attempt to its end (blocking: called by a Celery worker thread)."""
        return self._run(self.run_attempt(attempt_id), self.settings.max_call_s + 120)

    def _run(self, coro: Awaitable[T], timeout_s: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)  # type: ignore[arg-type]

    async def _db(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` in a transaction, off the event loop."""

        def work() -> T:
            with transaction(self.sessions) as session:
                return fn(session)

        return await asyncio.to_thread(work)

    # -- one attempt --------------------------------------------------------------------

    async def run_attempt(self, attempt_id: str) -> str:
        plan = await self._db(lambda s: load_plan(s, attempt_id))
        if plan is None:
            log.info("attempt %s is not queued: nothing to do (redelivered task?)", attempt_id)
            return "skipped"
        assert self.endpoint is not None
        if self.endpoint.active_calls >= self.endpoint.capacity:
            raise PacingTimeout("this call host is full")  # retried later, nothing dialled
        leases = await self._acquire_pacing(plan)
        try:
            worker, lease_s = self.settings.worker_id, self.settings.call_lease_s
            verdict = await self._db(
                lambda s: claim_for_dial(s, attempt_id, worker, lease_s, utcnow())
            )
            if verdict != "claimed":
                log.info("attempt %s not dialled: %s", attempt_id, verdict)
                return "skipped"
            return await self._call(plan, leases)
        finally:
            assert self.redis is not None
            for sem, lease in leases:
                await sem.release(lease)

    async def _acquire_pacing(self, plan: AttemptPlan) -> list[tuple[LeasedSemaphore, Lease]]:
        assert self.redis is not None
        lease_s = self.settings.call_lease_s
        deadline = time.monotonic() + self.settings.pacing_wait_s
        semaphores = [
            LeasedSemaphore(
                self.redis,
                f"cf:conc:campaign:{plan.campaign_id}",
                plan.campaign_concurrency,
                lease_s,
            )
        ]
        buckets = [
            TokenBucket(self.redis, f"cf:cps:campaign:{plan.campaign_id}", plan.campaign_cps, 1)
        ]
        if plan.trunk is not None and plan.trunk_concurrency and plan.trunk_cps:
            semaphores.append(
                LeasedSemaphore(
                    self.redis, f"cf:conc:trunk:{plan.trunk.name}", plan.trunk_concurrency, lease_s
                )
            )
            buckets.append(
                TokenBucket(self.redis, f"cf:cps:trunk:{plan.trunk.name}", plan.trunk_cps, 1)
            )
        # One holder per task, not per attempt: a duplicate task of the same attempt must
        # never release the slot the dialling one holds.
        holder = f"{plan.attempt_id}:{uuid.uuid4().hex[:8]}"
        held: list[tuple[LeasedSemaphore, Lease]] = []
        try:
            for sem in semaphores:
                while (lease := await sem.acquire(holder)) is None:
                    if time.monotonic() > deadline:
                        raise PacingTimeout(f"no concurrency slot in {sem.key}")
                    await asyncio.sleep(0.05)
                held.append((sem, lease))
            for bucket in buckets:
                if not await bucket.take(max(0.0, deadline - time.monotonic())):
                    raise PacingTimeout(f"no calls-per-second token in {bucket.key}")
        except BaseException:
            for sem, lease in held:
                await sem.release(lease)
            raise
        return held

    async def _call(self, plan: AttemptPlan, leases: list[tuple[LeasedSemaphore, Lease]]) -> str:
        assert self.endpoint is not None
        started = time.monotonic()
        try:
            if plan.trunk is not None and plan.trunk.name not in self._trunks:
                await self.endpoint.add_trunk(plan.trunk)
                self._trunks[plan.trunk.name] = plan.trunk
            call = await self.endpoint.dial(
                plan.phone,
                trunk=plan.trunk,
                call_id=plan.attempt_id,
                ring_timeout_s=self.settings.ring_timeout_s,
            )
        except CapacityError as e:
            # Claimed but no INVITE went out: give the attempt back, uncounted.
            reason = f"call host full: {e}"
            log.warning("attempt %s withdrawn: %s", plan.attempt_id, reason)
            await self._db(lambda s: withdraw(s, plan.attempt_id, reason, utcnow()))
            return "withdrawn"
        except (SipError, ValueError) as e:
            log.error("attempt %s could not be dialled: %s", plan.attempt_id, e)
            await self._finish(plan, "failed", {"sip_reason": f"not dialled: {e}"}, None)
            return "failed"
        ring_s, run = await self._converse(call, plan, leases, started)
        outcome = call.end_reason.value if call.end_reason else "failed"
        if run is not None and run.amd is not None and run.amd["label"] == "voicemail":
            outcome = VOICEMAIL  # a machine answered: the campaign's voicemail retry applies
        result = {
            "ring_s": round(ring_s, 3) if ring_s is not None else None,
            "talk_s": round(call.duration_s, 3),
            "dtmf": "".join(e.digit for e in call.dtmf_received),
            **_agent_result(run),
            **self._call_record(plan.attempt_id),
        }
        await self._finish(plan, outcome, result, call)
        return outcome

    async def _converse(
        self,
        call: Call,
        plan: AttemptPlan,
        leases: list[tuple[LeasedSemaphore, Lease]],
        started: float,
    ) -> tuple[float | None, AgentRun | None]:
        """Follow a call to its end with its agent, keeping its state and leases in
        step; an error on our side hangs up rather than leaving the call (or its
        outcome) behind. Returns the ring time when it was answered, and what the voice
        agent heard and said."""
        self._live[plan.attempt_id] = (call, plan.tenant_id)
        call.on("ended", lambda _reason: self._live.pop(plan.attempt_id, None))
        states: asyncio.Queue[CallState] = asyncio.Queue()
        call.on("state", states.put_nowait)
        writer = asyncio.ensure_future(self._write_states(plan.attempt_id, states))
        keeper = asyncio.ensure_future(self._keep_leases(call, plan, leases))
        ring_s = None
        run: AgentRun | None = None
        try:
            if await call.wait_answered():
                ring_s = time.monotonic() - started
                self._start_recording(call, plan.attempt_id)
                if isinstance(plan.agent, VoiceAgentConfig):
                    run = await self._run_voice_agent(call, plan, plan.agent)
                else:
                    await run_playback_agent(call, plan.agent)
            await call.wait_ended(30)
        except Exception:
            log.exception("call %s: the agent failed; hanging up", plan.attempt_id)
            await call.hangup()
        finally:
            keeper.cancel()
            await states.put(CallState.ENDED)
            await writer
        return ring_s, run

    def _start_recording(self, call: Call, attempt_id: str) -> None:
        """Both directions to ``recordings_dir/<attempt id>.wav`` when recording is on."""
        directory = self.settings.recordings_dir
        if not directory:
            return
        path = os.path.join(directory, f"{attempt_id}.wav")
        try:
            os.makedirs(directory, exist_ok=True)
            call.start_recording(path)
        except (OSError, SipError) as e:
            log.error("call %s: recording to %s failed: %s", attempt_id, path, e)
            return
        self._recordings[attempt_id] = path

    def _call_record(self, attempt_id: str) -> dict[str, Any]:
        """What the host noted during the call: its recording and its transfers."""
        return {
            "recording_path": self._recordings.pop(attempt_id, None),
            "transfers": self._transfers.pop(attempt_id, []),
        }

    def _definition(self, config: VoiceAgentConfig) -> AgentDefinition:
        """The parsed definition of an agent config, rebuilt when the config changed."""
        cached = self._definitions.get(config.config_id)
        if cached is not None and cached[0] == config.definition:
            return cached[1]
        definition = AgentDefinition.parse(
            config.definition, source=f"agent config {config.config_id}"
        )
        if cached is not None:  # the old one's providers close when its calls are done
            self._spawn(self._close_when_idle(cached[1]))
        self._definitions[config.config_id] = (config.definition, definition)
        return definition

    async def _close_when_idle(self, definition: AgentDefinition) -> None:
        assert self.endpoint is not None
        try:
            await self.endpoint.wait_idle(self.settings.max_call_s)
        except TimeoutError:
            pass  # no call can have lasted longer than max_call_s: they are done with it
        await definition.aclose()

    async def _run_voice_agent(
        self, call: Call, plan: AttemptPlan, config: VoiceAgentConfig
    ) -> AgentRun:
        attempt_id = plan.attempt_id
        assert self.endpoint is not None
        backend = SipTransferBackend(
            self.endpoint, trunk=plan.trunk.name if plan.trunk is not None else None
        )
        try:
            session, agent = self._definition(config).build(
                config.variables, transfer_backend=backend, amd=plan.amd
            )
        except AgentConfigError as e:
            log.error("call %s: agent config cannot run: %s; hanging up", attempt_id, e)
            await call.hangup()
            return AgentRun(call_id=call.id, close_reason="error", errors=[f"config: {e}"])
        self._sessions[attempt_id] = session

        def transfer_done(outcome: TransferOutcome) -> None:
            # Noted at once: a blind transfer ends the call before this task could run.
            self._transfers.setdefault(attempt_id, []).append(outcome.as_dict())
            self._spawn(self._record_transfer(plan, outcome))

        session.on("transfer_completed", transfer_done)
        try:
            return await run_agent(session, agent, call, max_duration_s=self.settings.max_call_s)
        finally:
            self._sessions.pop(attempt_id, None)

    async def _record_transfer(self, plan: AttemptPlan, outcome: TransferOutcome) -> None:
        """A transfer by the agent: a call event with its outcome, and the webhook."""
        data = outcome.as_dict()
        event = CallEvent(attempt_id=plan.attempt_id, type="transfer", data=data)
        await self._db(lambda s: s.add(event))
        if outcome.ok:
            await self._transferred(
                plan.attempt_id, plan.tenant_id, outcome.target, mode=outcome.mode
            )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._inbound_tasks.add(task)
        task.add_done_callback(self._inbound_tasks.discard)

    # -- live-call commands ---------------------------------------------------------------

    async def _listen(self, pubsub: Any) -> None:
        """Run live-call commands as they arrive. When Redis drops the connection, log it
        and read again from the same subscription: redis-py reconnects and subscribes it
        again by itself (a second subscription would take half the commands and leave
        them unanswered)."""
        while True:
            try:
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("call command channel lost; listening again in 0.5 s")
                await asyncio.sleep(0.5)

    def _dispatch(self, data: bytes) -> None:
        try:
            command = CallCommand.parse(data)
        except ValueError as e:
            log.error("ignoring a malformed call command: %s", e)
            return
        self._spawn(self._execute(command))

    async def _execute(self, command: CallCommand) -> None:
        assert self.redis is not None
        live = self._live.get(command.attempt_id)
        result: dict[str, Any]
        if live is None:
            result = {"ok": False, "error": f"no live call {command.attempt_id} on this host"}
        else:
            call, tenant_id = live
            try:
                result = {"ok": True}
                if command.action == "hangup":
                    await call.hangup()
                elif command.action == "dtmf":
                    await call.send_dtmf(str(command.args["digits"]))
                elif command.action == "say":
                    text = str(command.args["text"])
                    session = self._sessions.get(command.attempt_id)
                    if session is not None:  # the agent's own voice, queued after it
                        handle = session.say(text)
                        await handle.wait_for_playout()
                        result["played"] = not handle.interrupted
                    else:
                        result["played"] = await self._say(call, text)
                elif command.action == "transfer":
                    target = str(command.args["target"])
                    outcome = await call.blind_transfer(target)
                    result["status_code"] = outcome.status_code
                    self._transfers.setdefault(command.attempt_id, []).append(
                        {
                            "mode": "blind",
                            "target": target,
                            "status_code": outcome.status_code,
                            "ok": outcome.ok,
                            "by": "command",
                        }
                    )
                    await self._transferred(command.attempt_id, tenant_id, target)
            except (SipError, ValueError, KeyError, TtsError, AgentError) as e:
                result = {"ok": False, "error": f"{command.action} failed: {e}"}
        event = CallEvent(
            attempt_id=command.attempt_id,
            type=f"command.{command.action}",
            data={"args": command.args, **result},
        )
        if live is not None:
            await self._db(lambda s: s.add(event))
        log.info("call %s command %s: %s", command.attempt_id, command.action, result)
        await reply(self.redis, command, result)

    async def _say(self, call: Call, text: str) -> bool:
        """Speak ``text`` on the call; ``False`` if it was cut off (cleared or hung up)."""
        samples, rate = await synthesize(text)
        if call.audio_out is None:
            raise ValueError("the call has no audio to speak into")
        call.audio_out.write(samples, rate)
        call.audio_out.finish()
        return await call.audio_out.wait_played()

    async def _transferred(
        self, attempt_id: str, tenant_id: str, target: str, *, mode: str = "blind"
    ) -> None:
        data = {"attempt_id": attempt_id, "target": target, "mode": mode}
        key = f"call.transferred:{attempt_id}"
        await self._db(
            lambda s: enqueue_webhook(s, tenant_id, "call.transferred", key, data, utcnow())
        )

    # -- inbound --------------------------------------------------------------------------

    async def _on_incoming(self, incoming: IncomingCall) -> None:
        callee = incoming.callee or ""
        route = await self._db(
            lambda s: route_inbound(s, callee, self.settings.worker_id, self.settings.call_lease_s)
        )
        if route is None:
            log.info("inbound call to %s: no agent answers that number", callee)
            await incoming.call.reject(404)
            return
        attempt_id, tenant_id, agent = route
        call = incoming.call
        data = {"attempt_id": attempt_id, "from": incoming.caller, "to": callee}
        await self._db(
            lambda s: enqueue_webhook(
                s, tenant_id, "call.inbound", f"call.inbound:{attempt_id}", data, utcnow()
            )
        )
        plan = AttemptPlan(
            attempt_id=attempt_id,
            tenant_id=tenant_id,
            campaign_id="",
            contact_id="",
            phone=incoming.caller or "",
            trunk=None,
            campaign_cps=0,
            campaign_concurrency=0,
            agent=agent,
        )
        await call.answer()
        _, run = await self._converse(call, plan, [], time.monotonic())
        outcome = call.end_reason.value if call.end_reason else "failed"
        result = {
            "talk_s": round(call.duration_s, 3),
            **_agent_result(run),
            **self._call_record(plan.attempt_id),
        }
        await self._finish(plan, outcome, result, call)

    async def _write_states(self, attempt_id: str, states: asyncio.Queue[CallState]) -> None:
        # One writer per call keeps the updates in order; failures are logged, not lost.
        targets = {
            CallState.RINGING: AttemptState.RINGING,
            CallState.EARLY_MEDIA: AttemptState.RINGING,
            CallState.ANSWERED: AttemptState.ANSWERED,
        }
        while (call_state := await states.get()) is not CallState.ENDED:
            target = targets.get(call_state)
            if target is None:
                continue
            extra: dict[str, Any] = (
                {"answered_at": utcnow()} if target is AttemptState.ANSWERED else {}
            )
            try:
                await self._db(functools.partial(_transition, attempt_id, target, extra))
            except Exception:
                log.exception("attempt %s: could not store state %s", attempt_id, target)

    async def _keep_leases(
        self, call: Call, plan: AttemptPlan, leases: list[tuple[LeasedSemaphore, Lease]]
    ) -> None:
        """Renew the attempt's claim and its pacing slots while the call lives. A failed
        renewal is logged and tried again next round; a claim another actor took (the
        reconciler decided this worker was dead) hangs up."""
        interval = self.settings.call_lease_s / 3
        worker, lease_s = self.settings.worker_id, self.settings.call_lease_s
        while True:
            await asyncio.sleep(interval)
            try:
                ok = await self._db(
                    lambda s: state.renew_lease(s, plan.attempt_id, worker, lease_s)
                )
                for sem, lease in leases:
                    if not await sem.renew(lease):
                        log.warning("call %s lost its slot in %s", plan.attempt_id, sem.key)
            except Exception:
                log.exception("call %s: lease renewal failed; retrying", plan.attempt_id)
                continue
            if not ok and not call.is_ended:
                log.error("attempt %s lost its lease: hanging up", plan.attempt_id)
                await call.hangup()
                return

    async def _finish(
        self, plan: AttemptPlan, outcome: str, result: dict[str, Any], call: Call | None
    ) -> None:
        sip_code = call.sip_code if call else None
        sip_reason = call.sip_reason if call else result.pop("sip_reason", None)
        data = {
            "attempt_id": plan.attempt_id,
            "campaign_id": plan.campaign_id,
            "contact_id": plan.contact_id,
            "phone": plan.phone,
            "outcome": outcome,
            "sip_code": sip_code,
            **result,
        }

        def store(s: Session) -> None:
            now = utcnow()
            if record_outcome(
                s,
                plan.attempt_id,
                outcome,
                now,
                sip_code=sip_code,
                sip_reason=sip_reason,
                result=result,
            ):
                enqueue_webhook(
                    s,
                    plan.tenant_id,
                    "call.completed",
                    f"call.completed:{plan.attempt_id}",
                    data,
                    now,
                )
                amd = result.get("amd")
                if outcome == VOICEMAIL and amd is not None:
                    voicemail = {
                        "attempt_id": plan.attempt_id,
                        "campaign_id": plan.campaign_id,
                        "contact_id": plan.contact_id,
                        "phone": plan.phone,
                        **amd,
                    }
                    key = f"call.voicemail:{plan.attempt_id}"
                    enqueue_webhook(s, plan.tenant_id, "call.voicemail", key, voicemail, now)

        await self._db(store)


def _transition(attempt_id: str, target: AttemptState, values: dict[str, Any], s: Session) -> bool:
    return state.transition(s, attempt_id, target, **values)


def _agent_result(run: AgentRun | None) -> dict[str, Any]:
    """The voice agent's part of a call result: transcript and per-turn metrics."""
    if run is None:
        return {}
    result: dict[str, Any] = {
        "transcript": run.transcript,
        "metrics": {"turns": run.metrics, "close_reason": run.close_reason, "errors": run.errors},
    }
    if run.amd is not None:
        result["amd"] = run.amd
    return result


def route_inbound(
    session: Session, callee: str, worker_id: str, lease_s: float
) -> tuple[str, str, AgentPlan] | None:
    """The agent config answering ``callee``, and a new answered inbound attempt for
    it (claimed by this worker); ``None`` when no agent has that number."""
    for agent in session.scalars(select(AgentConfig)):
        if callee in (agent.inbound_numbers or []):
            now = utcnow()
            attempt = CallAttempt(
                tenant_id=agent.tenant_id,
                direction="inbound",
                state=AttemptState.ANSWERED,
                worker_id=worker_id,
                claimed_at=now,
                answered_at=now,
                lease_expires_at=now + timedelta(seconds=lease_s),
            )
            session.add(attempt)
            session.flush()
            caller_vars = {"direction": "inbound", "called_number": callee}
            return attempt.id, agent.tenant_id, agent_plan(agent.id, agent.definition, caller_vars)
    return None


def load_plan(session: Session, attempt_id: str) -> AttemptPlan | None:
    attempt = session.get(CallAttempt, attempt_id)
    if attempt is None or attempt.state != AttemptState.QUEUED or attempt.contact_id is None:
        return None
    contact = session.get(Contact, attempt.contact_id)
    campaign = session.get(Campaign, attempt.campaign_id)
    if contact is None or campaign is None:
        return None
    plan = AttemptPlan(
        attempt_id=attempt.id,
        tenant_id=attempt.tenant_id,
        campaign_id=campaign.id,
        contact_id=contact.id,
        phone=contact.phone_e164,
        trunk=None,
        campaign_cps=campaign.max_cps,
        campaign_concurrency=campaign.max_concurrent,
    )
    try:
        action = cast(AMDAction, campaign.amd_action)  # AMDOptions checks it
        plan.amd = AMDOptions(action=action, message=campaign.voicemail_message)
    except ValueError as e:  # e.g. "voicemail" with no message: detect, but only hang up
        log.error("campaign %s: %s; machines are hung up on", campaign.id, e)
        plan.amd = AMDOptions(action="hangup")
    if campaign.trunk_id is not None:
        record = session.get(TrunkRecord, campaign.trunk_id)
        if record is not None:
            plan.trunk = Trunk(name=record.id, **record.config)
            plan.trunk_cps, plan.trunk_concurrency = record.max_cps, record.max_concurrent
    if campaign.agent_config_id is not None:
        agent = session.get(AgentConfig, campaign.agent_config_id)
        if agent is not None:
            variables = {"phone": contact.phone_e164, **(contact.variables or {})}
            if contact.name:
                variables.setdefault("name", contact.name)
            plan.agent = agent_plan(agent.id, agent.definition, variables)
    return plan


_host: CallHost | None = None
_host_lock = threading.Lock()


def get_host(settings: Settings) -> CallHost:
    """The process's call host, started on first use."""
    global _host
    with _host_lock:
        if _host is None:
            host = CallHost(settings)
            try:
                host.start()
            except BaseException:
                host.stop(drain_timeout_s=0)  # release PJSIP: one endpoint per process
                raise
            _host = host
        return _host


def stop_host(drain_timeout_s: float = 60.0) -> None:
    global _host
    with _host_lock:
        if _host is not None:
            _host.stop(drain_timeout_s)
            _host = None
