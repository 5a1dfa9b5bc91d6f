"""``SipEndpoint``: one per process, the asyncio face of PJSUA2.

It owns the engine thread (see ``engine``), the transports, one local account for
direct calls and one account per trunk. ``dial`` places calls, ``on_incoming``
receives them, ``bridge`` joins two calls' audio. Capacity is what the PJSIP build
allows (``PJSUA_MAX_CALLS``, 4 in the PyPI wheel): callfleet scales by running more
call-host processes, each with its own endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

from callfleet.sip import pjconfig
from callfleet.sip.call import Call
from callfleet.sip.config import EndpointConfig, Transport, Trunk
from callfleet.sip.dtmf import DtmfMethod
from callfleet.sip.engine import (
    PjEngine,
    _LogWriter,
    binding_max_calls,
    destroy_swig,
    pj_error,
    pjsua_call_count,
    set_transaction_timeout,
)
from callfleet.sip.errors import CapacityError, SipError
from callfleet.sip.media_port import CallMediaPort
from callfleet.sip.message import SipMessageHead, display_name, is_valid_header, uri_user
from callfleet.sip.pjcall import PjAccount, PjCall
from callfleet.sip.uri import SipUri, normalise_number, target_uri

log = logging.getLogger(__name__)

IncomingHandler = Callable[["IncomingCall"], Awaitable[None] | None]

#: PJ_ETOOMANY: PJSIP's "too many objects" status, returned by makeCall past the limit.
PJ_ETOOMANY = 70010
#: A slot PJSUA is still releasing is retried this often, this far apart.
SLOT_RELEASE_RETRIES = 25
SLOT_RELEASE_WAIT_S = 0.02
#: How long a disconnected media port is kept before it is destroyed.
PORT_RETIRE_S = 0.5


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """What an incoming-call handler is given: the ``call`` (answer/ring/reject it) and
    who is calling whom. ``callee`` is the dialled number (Request-URI user part)."""

    call: Call
    caller: str | None
    caller_name: str | None
    callee: str | None
    headers: Mapping[str, str]
    source: str


@dataclass(frozen=True, slots=True)
class Registration:
    code: int
    reason: str
    expires_s: int

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300 and self.expires_s > 0


class SipEndpoint:
    def __init__(self, config: EndpointConfig | None = None) -> None:
        self.config = config or EndpointConfig()
        self.engine = PjEngine()
        self.capacity = 0
        self._trunks: dict[str, Trunk] = {t.name: t for t in self.config.trunks}
        self._accounts: dict[str, PjAccount] = {}
        self._transport_ids: dict[Transport, int] = {}
        self._transport_ports: dict[Transport, int] = {}
        self._calls: dict[str, Call] = {}
        self._pending_dials = 0
        # Engine-thread only: PJSUA2 objects kept alive until PJSIP is done with them.
        self._pj_live: set[PjCall] = set()
        self._pj_dead: list[PjCall] = []
        self._retired_ports: list[tuple[float, CallMediaPort]] = []
        self._incoming: IncomingHandler | None = None
        self._pj_slots = 0  # PJSIP's call slots in use, refreshed after every poll
        self._idle = asyncio.Event()
        self._registrations: dict[str, Registration] = {}
        self._reg_waiters: dict[str, asyncio.Future[Registration]] = {}
        self._log_writer = _LogWriter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        loop = asyncio.get_running_loop()
        self.engine.after_poll.append(self._pj_housekeeping)
        await loop.run_in_executor(None, self.engine.start, loop, self._pj_setup, self._pj_teardown)
        self._started = True
        log.info(
            "SIP endpoint up: capacity %d calls, transports %s",
            self.capacity,
            {k.value: v for k, v in self._transport_ports.items()},
        )
        for trunk in self._trunks.values():
            await self.add_trunk(trunk)

    async def aclose(self) -> None:
        """Hang up every call (bounded wait) and shut PJSIP down. Idempotent."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        calls = [c for c in self._calls.values() if not c.is_ended]
        if calls:
            await asyncio.gather(*(c.hangup(timeout_s=3.0) for c in calls))
        await asyncio.get_running_loop().run_in_executor(None, self.engine.stop)
        for task in list(self._tasks):
            task.cancel()

    async def __aenter__(self) -> SipEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _pj_setup(self, ep: Any) -> None:
        ep.libInit(pjconfig.endpoint_config(self.config, self._log_writer))
        set_transaction_timeout(self.config.transaction_timeout_s)
        self.capacity = binding_max_calls()
        for spec in self.config.transports:
            tid, port = pjconfig.create_transport(ep, spec)
            self._transport_ids[spec.kind], self._transport_ports[spec.kind] = tid, port
        udp = next((t for t in self.config.transports if t.kind is Transport.UDP), None)
        if udp is not None:
            self.engine.set_waker(udp.bind_address, self._transport_ports[Transport.UDP])
        ep.libStart()
        ep.audDevManager().setNullDev()  # no sound card: the null device drives the clock
        pjconfig.set_codec_order(ep, self.config.codecs)
        local = PjAccount(self, "")
        local.create(pjconfig.local_account_config(self.config), True)
        self._accounts[""] = local

    def _pj_teardown(self, ep: Any) -> None:
        ep.hangupAllCalls()
        for _ in range(200):  # up to ~1 s for BYEs/CANCELs to go out and calls to clear
            if not self._pj_live:
                break
            ep.libHandleEvents(5)
        self._pj_dead.extend(self._pj_live)
        for pjcall in self._pj_live:
            pjcall.release_media()
        self._pj_housekeeping(final=True)
        for acc in self._accounts.values():
            try:
                acc.shutdown()
            except pj.Error:
                log.warning("account %s shutdown failed", acc.name)
        self._accounts.clear()

    # -- introspection ----------------------------------------------------------------

    def transport_port(self, kind: Transport | str = Transport.UDP) -> int:
        return self._transport_ports[Transport(kind)]

    @property
    def active_calls(self) -> int:
        """Calls in progress, or PJSIP's slots in use if more (an INVITE that never got a
        response holds its slot until the transaction timeout, after the call ended)."""
        live = sum(1 for c in self._calls.values() if not c.is_ended) + self._pending_dials
        return max(live, self._pj_slots)

    async def pjsip_call_slots(self) -> int:
        """Call slots PJSIP itself holds (a health check: should track ``active_calls``)."""
        return await self.engine.submit(pjsua_call_count)

    @property
    def calls(self) -> list[Call]:
        return list(self._calls.values())

    def trunk(self, name: str) -> Trunk:
        try:
            return self._trunks[name]
        except KeyError:
            raise ValueError(f"unknown trunk {name!r} (known: {sorted(self._trunks)})") from None

    def local_uri(self, kind: Transport | str = Transport.UDP) -> str:
        spec = next(t for t in self.config.transports if t.kind is Transport(kind))
        host = spec.public_address or spec.bind_address
        host = "127.0.0.1" if host == "0.0.0.0" else host
        suffix = "" if spec.kind is Transport.UDP else f";transport={spec.kind.value}"
        return f"sip:{self.config.local_user}@{host}:{self.transport_port(kind)}{suffix}"

    # -- trunks and registration -------------------------------------------------------

    async def add_trunk(self, trunk: Trunk) -> None:
        """Create the trunk's account; with ``register`` this sends REGISTER (and keeps
        refreshing it). Await ``wait_registered`` for the result."""
        self._trunks[trunk.name] = trunk
        loop = asyncio.get_running_loop()
        if trunk.register:
            self._reg_waiters[trunk.name] = loop.create_future()

        def do() -> None:
            tid = self._transport_ids.get(trunk.transport)
            if tid is None:
                raise SipError(f"trunk {trunk.name!r} uses {trunk.transport} but no such transport")
            acfg = pjconfig.trunk_account_config(trunk, tid, self.config)
            acc = PjAccount(self, trunk.name)
            acc.create(acfg)
            old = self._accounts.pop(trunk.name, None)
            if old is not None:
                old.shutdown()
            self._accounts[trunk.name] = acc

        try:
            await self.engine.submit(do)
        except pj.Error as e:
            raise pj_error(f"trunk {trunk.name!r}", e) from e

    async def wait_registered(self, trunk: str, timeout_s: float = 10.0) -> Registration:
        """The first REGISTER outcome of ``trunk`` (success or the final failure)."""
        fut = self._reg_waiters.get(trunk)
        if fut is None:
            raise ValueError(f"trunk {trunk!r} does not register")
        return await asyncio.wait_for(asyncio.shield(fut), timeout_s)

    def registration(self, trunk: str) -> Registration | None:
        return self._registrations.get(trunk)

    def _pj_reg_state(self, name: str, code: int, reason: str, expires: int) -> None:
        self.engine.to_loop(self._on_reg_state, name, Registration(code, reason, expires))

    def _on_reg_state(self, name: str, reg: Registration) -> None:
        self._registrations[name] = reg
        level = logging.INFO if reg.ok else logging.WARNING
        log.log(level, "trunk %s registration: %s %s", name, reg.code, reg.reason)
        fut = self._reg_waiters.get(name)
        if fut is not None and not fut.done() and reg.code >= 200:
            fut.set_result(reg)

    # -- outbound ---------------------------------------------------------------------

    def resolve_target(self, to: str, trunk: Trunk | None = None) -> SipUri:
        """``to`` as a Request-URI (numbers go to the trunk's host); ``ValueError`` names it."""
        if trunk is None:
            return target_uri(to, host=None)
        return target_uri(to, host=trunk.host, transport=trunk.uri_transport)

    async def dial(
        self,
        to: str,
        *,
        trunk: str | Trunk | None = None,
        caller_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        ring_timeout_s: float = 60.0,
        call_id: str | None = None,
    ) -> Call:
        """Send an INVITE to ``to`` (a SIP URI, or a number with a trunk) and return the
        ``Call`` at once; it moves dialing → ringing/early media → answered → ended.

        Raises ``ValueError`` for an invalid target, caller id or header before anything
        is sent, and ``CapacityError`` when the endpoint already holds ``capacity`` calls.
        """
        if self._closed or not self._started:
            raise SipError("SIP endpoint is not running")
        trunk_cfg = self.trunk(trunk) if isinstance(trunk, str) else trunk
        uri = self.resolve_target(to, trunk_cfg)
        extra = {**(trunk_cfg.headers if trunk_cfg else {}), **(headers or {})}
        for name, value in extra.items():
            if not is_valid_header(name, value):
                raise ValueError(f"invalid SIP header {name!r}: {value!r}")
        from_uri = self._from_uri(caller_id, trunk_cfg)
        if ring_timeout_s <= 0:
            raise ValueError(f"ring_timeout_s must be positive, got {ring_timeout_s}")
        if self.active_calls >= self.capacity:
            raise CapacityError(
                f"endpoint holds {self.active_calls} of {self.capacity} calls: "
                "run another call-host process for more",
                status=PJ_ETOOMANY,
            )
        account = self._accounts[trunk_cfg.name if trunk_cfg else ""]
        codecs = trunk_cfg.codecs if trunk_cfg else None
        self._pending_dials += 1
        try:
            pjcall = await self.engine.submit(lambda: self._pj_new_call(account, codecs))
            call = Call(
                self,
                pjcall,
                direction="outbound",
                remote_uri=str(uri),
                call_id=call_id,
                dtmf_method=trunk_cfg.dtmf_method if trunk_cfg else DtmfMethod.RFC4733,
            )
            self._calls[call.id] = call
        finally:
            self._pending_dials -= 1
        call.log.info("call %s dialling %s", call.id, uri)
        try:
            await self._make_call(pjcall, str(uri), from_uri, extra)
        except Exception as e:
            self._calls.pop(call.id, None)
            self.engine.post(lambda: self._pj_discard(pjcall))
            status = getattr(e, "status", None)
            if status == PJ_ETOOMANY:
                raise CapacityError(f"PJSIP refused call {call.id}: too many calls") from e
            if isinstance(e, SipError):
                raise
            raise pj_error(f"call {call.id} to {uri} failed", e) from e
        call._start_ring_timer(ring_timeout_s)
        return call

    async def _make_call(
        self, pjcall: PjCall, uri: str, from_uri: str | None, headers: Mapping[str, str]
    ) -> None:
        # PJSUA frees a call slot only after the media of the ended call is torn down,
        # a poll or two after DISCONNECTED; a slot we count as free may still be busy.
        for attempt in range(SLOT_RELEASE_RETRIES + 1):
            try:
                await self.engine.submit(lambda: self._pj_make_call(pjcall, uri, from_uri, headers))
                return
            except pj.Error as e:
                if e.status != PJ_ETOOMANY or attempt == SLOT_RELEASE_RETRIES:
                    raise
                log.debug("call slot still being released, retry %d", attempt + 1)
                await asyncio.sleep(SLOT_RELEASE_WAIT_S)

    def _from_uri(self, caller_id: str | None, trunk: Trunk | None) -> str | None:
        caller = caller_id or (trunk.caller_id if trunk else None)
        if caller is None:
            return None
        if caller.startswith(("sip:", "sips:", '"', "<")):
            SipUri.parse(caller)
            return caller
        number = normalise_number(caller)
        host = trunk.host if trunk else "localhost"
        name = trunk.caller_name if trunk and trunk.caller_name else None
        uri = f"sip:{number}@{host}"
        return f'"{name}" <{uri}>' if name else f"<{uri}>"

    def _pj_new_call(self, account: PjAccount, codecs: tuple[str, ...] | None) -> PjCall:
        pjcall = PjCall(self, account)
        pjcall.codecs = codecs
        self._pj_live.add(pjcall)
        return pjcall

    def _pj_make_call(
        self, pjcall: PjCall, uri: str, from_uri: str | None, headers: Mapping[str, str]
    ) -> None:
        pjcall.makeCall(uri, pjconfig.make_call_param(from_uri, headers))

    def _pj_discard(self, pjcall: PjCall) -> None:
        self._pj_live.discard(pjcall)

    # -- inbound ----------------------------------------------------------------------

    def on_incoming(self, handler: IncomingHandler) -> None:
        """``handler(incoming)`` runs for each incoming call; it must ring, answer or
        reject ``incoming.call``. Without a handler calls are rejected with 480."""
        self._incoming = handler

    def _pj_incoming(self, account: PjAccount, call_id: int, message: str, source: str) -> None:
        pjcall = PjCall(self, account, call_id)
        pjcall.codecs = self._trunks[account.name].codecs if account.name in self._trunks else None
        self._pj_live.add(pjcall)
        remote = str(pjcall.getInfo().remoteUri)
        self.engine.to_loop(self._on_incoming, pjcall, message, source, remote)

    def _on_incoming(self, pjcall: PjCall, message: str, source: str, remote: str) -> None:
        try:
            head: SipMessageHead | None = SipMessageHead.parse(message)
        except ValueError as e:
            log.warning("incoming INVITE from %s has an unreadable head: %s", source, e)
            head = None
        call = Call(self, pjcall, direction="inbound", remote_uri=remote, request=head)
        self._calls[call.id] = call
        from_value = head.header("from") if head else remote
        incoming = IncomingCall(
            call=call,
            caller=uri_user(from_value),
            caller_name=display_name(from_value),
            callee=uri_user(head.request_uri) if head else None,
            headers=head.flat_headers() if head else {},
            source=source,
        )
        call.log.info("call %s incoming from %s to %s", call.id, incoming.caller, incoming.callee)
        if self._incoming is None:
            self._spawn(call.reject(480))
            return
        try:
            result = self._incoming(incoming)
        except Exception:
            call.log.exception("call %s incoming handler failed", call.id)
            self._spawn(call.reject(500))
            return
        if result is not None:
            self._spawn(self._guard_handler(call, result))

    async def _guard_handler(self, call: Call, result: Awaitable[None]) -> None:
        try:
            await result
        except Exception:
            call.log.exception("call %s incoming handler failed", call.id)
            if not call.is_ended:
                await call.hangup(500)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- calls created by PJSIP (transfers, replaces) ----------------------------------

    def _pj_adopt(self, pjcall: PjCall) -> None:
        self._pj_live.add(pjcall)

    def _adopt_outbound(self, pjcall: PjCall, target: str) -> Call:
        call = Call(self, pjcall, direction="outbound", remote_uri=target)
        self._calls[call.id] = call
        call.log.info("call %s created by a transfer to %s", call.id, target)
        return call

    def _adopt_replacement(self, pjcall: PjCall, old: Call) -> Call:
        call = Call(self, pjcall, direction=old.direction, remote_uri="")
        self._calls[call.id] = call
        call.log.info("call %s replaces %s", call.id, old.id)
        return call

    # -- media ------------------------------------------------------------------------

    async def bridge(self, a: Call, b: Call) -> None:
        """Connect the audio of two calls both ways through the conference bridge (warm
        transfer). Each call's ``audio_in`` keeps receiving; ``unbridge`` undoes it."""
        await self._connect(a, b, connect=True)

    async def unbridge(self, a: Call, b: Call) -> None:
        await self._connect(a, b, connect=False)

    async def _connect(self, a: Call, b: Call, *, connect: bool) -> None:
        for c in (a, b):
            c._require_live("bridge")
        pa, pb = a._pjcall, b._pjcall

        def do() -> None:
            ma, mb = pa.audio_media(), pb.audio_media()
            if ma is None or mb is None:
                raise SipError("both calls need active audio to be bridged")
            if connect:
                ma.startTransmit(mb)
                mb.startTransmit(ma)
                pa.bridged.add(pb)
                pb.bridged.add(pa)
            else:
                ma.stopTransmit(mb)
                mb.stopTransmit(ma)
                pa.bridged.discard(pb)
                pb.bridged.discard(pa)

        try:
            await self.engine.submit(do)
        except pj.Error as e:
            raise pj_error(f"bridge {a.id} <-> {b.id}", e) from e

    # -- engine-thread housekeeping ------------------------------------------------------

    def _pj_call_ended(self, pjcall: PjCall) -> None:
        self._pj_dead.append(pjcall)

    def _pj_retire_port(self, port: CallMediaPort) -> None:
        self._retired_ports.append((time.monotonic() + PORT_RETIRE_S, port))

    def _pj_housekeeping(self, *, final: bool = False) -> None:
        """Destroy ended calls and unused media ports, on the engine thread.

        A ``pj.Call`` left to Python's garbage collector would run its C++ destructor on
        whatever thread drops the last reference, and that destructor clears the user
        data of its call slot, which by then may belong to a newer call. So each ended
        call is destroyed explicitly here, right after the poll that ended it. Ports are
        kept a little longer: the clock thread applies disconnections on its next tick.
        """
        slots = pjsua_call_count()
        if slots != self._pj_slots:
            self._pj_slots = slots
            self.engine.to_loop(self._check_idle)
        if self._pj_dead:
            dead, self._pj_dead = self._pj_dead, []
            for pjcall in dead:
                self._pj_live.discard(pjcall)
                destroy_swig(pjcall)
        if self._retired_ports:
            now = time.monotonic()
            keep = []
            for deadline, port in self._retired_ports:
                if final or deadline <= now:
                    destroy_swig(port)
                else:
                    keep.append((deadline, port))
            self._retired_ports = keep

    def _forget(self, call: Call) -> None:
        self._calls.pop(call.id, None)
        self._check_idle()

    def _check_idle(self) -> None:
        if self.active_calls == 0:
            self._idle.set()
        else:
            self._idle.clear()

    async def wait_idle(self, timeout_s: float | None = None) -> None:
        """Until no call is up and PJSIP holds no call slot (graceful drain)."""
        self._check_idle()
        await asyncio.wait_for(self._idle.wait(), timeout_s)
