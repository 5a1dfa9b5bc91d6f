"""Webhook wire format: the event body, its headers and its signature.

Body
    One JSON object per event, UTF-8, compact, keys sorted::

        {"created_at": "2024-05-01T12:00:00Z", "data": {...}, "id": "att_1f…:completed",
         "tenant_id": "ten_…", "type": "call.completed"}

    ``id`` is the event's idempotency key: one event has one id, however often and to
    however many subscriptions it is sent. ``created_at`` is ISO 8601 in UTC with a "Z".
    Receivers should ignore fields they do not know; new ones may be added.

Headers
    ``Content-Type: application/json``, ``X-Callfleet-Event`` (the type),
    ``X-Callfleet-Delivery`` (the delivery id, new for each subscription),
    ``Idempotency-Key`` (``<event id>:<subscription id>``: the same for every retry of
    one delivery, so that a receiver can drop repeats) and ``X-Callfleet-Signature``.

Signature (the scheme of Stripe's ``Stripe-Signature``,
https://docs.stripe.com/webhooks#verify-manually)
    ``X-Callfleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` where the HMAC is
    keyed with the subscription's secret (UTF-8) over ``f"{t}.".encode() + body``, the
    body exactly as received. A receiver recomputes it, compares it in constant time
    (``hmac.compare_digest``) with every ``v1`` in the header, and rejects timestamps
    more than a tolerance (default 300 s) away from its clock, which bounds replays.
    ``verify`` does all of this.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EVENT_TYPES: tuple[str, ...] = (
    "call.completed",
    "call.voicemail",
    "call.transferred",
    "call.inbound",
    "campaign.completed",
)

SIGNATURE_HEADER = "X-Callfleet-Signature"
EVENT_HEADER = "X-Callfleet-Event"
DELIVERY_HEADER = "X-Callfleet-Delivery"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300

_CREATED_AT_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


class SignatureError(ValueError):
    """An ``X-Callfleet-Signature`` header that does not prove the body is ours."""


def _format_time(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _required_str(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None or value == "":
        raise ValueError(f"webhook event has no {name}")
    if not isinstance(value, str):
        raise ValueError(f"webhook event {name} must be a string, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class WebhookEvent:
    """One event as sent to receivers (see the module docstring for the schema)."""

    id: str
    type: str
    created_at: datetime
    tenant_id: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"webhook event type {self.type!r} is unknown")
        if self.created_at.tzinfo is None:
            raise ValueError(
                f"webhook event created_at {self.created_at.isoformat()} has no time zone"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "created_at": _format_time(self.created_at),
            "tenant_id": self.tenant_id,
            "data": dict(self.data),
        }

    def to_json(self) -> bytes:
        """The body as sent: compact UTF-8 JSON with sorted keys."""
        return json.dumps(
            self.to_dict(),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode()

    @classmethod
    def from_dict(cls, obj: Any) -> WebhookEvent:
        """The event in a decoded body; unknown fields are ignored."""
        if not isinstance(obj, dict):
            raise ValueError(f"webhook body must be a JSON object, got {type(obj).__name__}")
        event_id = _required_str(obj, "id")
        event_type = _required_str(obj, "type")
        if event_type not in EVENT_TYPES:
            raise ValueError(f"webhook event type {event_type!r} is unknown")
        created = _required_str(obj, "created_at")
        if not _CREATED_AT_RE.fullmatch(created):
            raise ValueError(f"webhook event created_at {created!r} is not an ISO 8601 UTC time")
        try:
            created_at = datetime.fromisoformat(created[:-1]).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(
                f"webhook event created_at {created!r} is not an ISO 8601 UTC time"
            ) from None
        tenant_id = _required_str(obj, "tenant_id")
        data = obj.get("data", {})
        if not isinstance(data, dict):
            raise ValueError(f"webhook event data must be an object, got {type(data).__name__}")
        return cls(event_id, event_type, created_at, tenant_id, data)

    @classmethod
    def parse(cls, body: bytes) -> WebhookEvent:
        """The event in a received body; ``ValueError`` with an exact sentence if bad."""
        try:
            obj = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("webhook body is not JSON") from None
        return cls.from_dict(obj)


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Callfleet-Signature`` value for ``body`` sent at ``timestamp`` (unix s)."""
    return f"t={timestamp},{SIGNATURE_SCHEME}={_mac(secret, body, timestamp)}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    now: datetime | float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Check an ``X-Callfleet-Signature`` header against the raw ``body``.

    ``now`` is an aware datetime or unix seconds. Raises ``SignatureError`` when the
    header is missing or malformed, its timestamp is more than ``tolerance_s`` seconds
    from ``now`` (either way), or no ``v1`` signature matches.
    """
    if not header:
        raise SignatureError(f"{SIGNATURE_HEADER} header is missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(
                f"{SIGNATURE_HEADER} header is malformed: {part.strip()!r} is not key=value"
            )
        if name == "t":
            if not value.isascii() or not value.isdigit():
                raise SignatureError(
                    f"{SIGNATURE_HEADER} header is malformed: timestamp {value!r} "
                    "is not unix seconds"
                )
            timestamp = int(value)
        elif name == SIGNATURE_SCHEME:
            candidates.append(value)
    if timestamp is None:
        raise SignatureError(f"{SIGNATURE_HEADER} header is malformed: no timestamp")
    if not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER} header is malformed: no v1 signature")
    now_s = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(now_s - timestamp) > tolerance_s:
        raise SignatureError(
            f"webhook timestamp {timestamp} is outside the tolerance of {tolerance_s:g} s "
            f"(now {int(now_s)})"
        )
    expected = _mac(secret, body, timestamp).encode()
    if not any(hmac.compare_digest(expected, c.encode()) for c in candidates):
        raise SignatureError("webhook signature does not match")
