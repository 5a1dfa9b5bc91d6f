"""``SipTransferBackend``: what the agents' transfers (``callfleet.agents.transfer``) need
from SIP, on a ``SipEndpoint``: REFER, dialling the human's leg, bridging two legs.

It implements the ``TransferBackend`` protocol structurally (``callfleet.sip`` does not
import ``callfleet.agents``: the arrows point the other way).
"""

from __future__ import annotations

from collections.abc import Mapping

from callfleet.sip.call import Call, TransferResult
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.errors import TransferError


class SipTransferBackend:
    """Transfers on ``endpoint``. Numbers (not SIP URIs) go out through ``trunk``, both
    in a REFER's Refer-To and in a dialled leg; ``caller_id`` and ``headers`` are used
    for the dialled leg (defaults: the trunk's)."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        *,
        trunk: str | None = None,
        caller_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.trunk = trunk
        self.caller_id = caller_id
        self.headers = dict(headers or {})
        if trunk is not None:
            endpoint.trunk(trunk)  # ValueError names an unknown trunk now, not mid-call

    def refer_target(self, target: str) -> str:
        """``target`` as the Refer-To URI (a number goes to the trunk's host)."""
        trunk = self.endpoint.trunk(self.trunk) if self.trunk else None
        return str(self.endpoint.resolve_target(target, trunk))

    async def refer(self, call: object, target: str, *, timeout_s: float) -> TransferResult:
        """Blind-transfer ``call``; a refusal or a failed NOTIFY is returned as a result
        (``status_code`` >= 300), not raised. ``CallStateError`` if the call ended."""
        leg = _sip_call(call)
        try:
            return await leg.blind_transfer(self.refer_target(target), timeout_s=timeout_s)
        except TransferError as e:
            code = e.status if e.status is not None and e.status >= 300 else 408
            return TransferResult(code, str(e))

    async def dial(self, target: str, *, ring_timeout_s: float) -> Call:
        return await self.endpoint.dial(
            target,
            trunk=self.trunk,
            caller_id=self.caller_id,
            headers=self.headers,
            ring_timeout_s=ring_timeout_s,
        )

    async def bridge(self, a: object, b: object) -> None:
        await self.endpoint.bridge(_sip_call(a), _sip_call(b))

    async def unbridge(self, a: object, b: object) -> None:
        await self.endpoint.unbridge(_sip_call(a), _sip_call(b))


def _sip_call(call: object) -> Call:
    if not isinstance(call, Call):
        raise TypeError(f"SIP transfers need a SIP call, got {type(call).__name__}")
    return call
