"""The dialer's tables (SQLAlchemy 2). One row per thing a user can point at; every
timestamp is aware UTC; ids are readable strings (``cmp_…``, ``att_…``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from callfleet.dialer.db import Base, new_id, utcnow


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"  # no new calls; live calls finish
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class ContactStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or its calling window)
    IN_PROGRESS = "in_progress"  # an attempt is queued or live
    DONE = "done"  # final outcome reached
    SUPPRESSED = "suppressed"  # never called: do-not-call, invalid, cancelled


class AttemptState(StrEnum):
    QUEUED = "queued"
    DIALING = "dialing"
    RINGING = "ringing"
    ANSWERED = "answered"
    COMPLETED = "completed"
    FAILED = "failed"


class AmdAction(StrEnum):
    HANGUP = "hangup"
    VOICEMAIL = "voicemail"
    CONTINUE = "continue"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # retries exhausted: replay it by hand


def _id(prefix: str) -> Any:
    return mapped_column(String(40), primary_key=True, default=lambda: new_id(prefix))


def _tenant() -> Any:
    return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = _id("ten")
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """Only a SHA-256 of the key is stored (keys are long random tokens, so a fast
    hash is enough); ``prefix`` lets a user recognise a key in a list."""

    __tablename__ = "api_keys"
    id: Mapped[str] = _id("key")
    tenant_id: Mapped[str] = _tenant()
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class TrunkRecord(Base):
    """A trunk as configured by a tenant; ``callfleet.sip.config.Trunk`` at run time."""

    __tablename__ = "trunks"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = _id("trk")
    tenant_id: Mapped[str] = _tenant()
    name: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    max_cps: Mapped[float] = mapped_column(Float, default=10.0)
    max_concurrent: Mapped[int] = mapped_column(Integer, default=10)


class AgentConfig(Base):
    __tablename__ = "agent_configs"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = _id("agt")
    tenant_id: Mapped[str] = _tenant()
    name: Mapped[str] = mapped_column(String(100))
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Inbound calls to these numbers (E.164) are answered by this agent.
    inbound_numbers: Mapped[list[Any]] = mapped_column(default=list)


class Campaign(Base):
    __tablename__ = "campaigns"
    id: Mapped[str] = _id("cmp")
    tenant_id: Mapped[str] = _tenant()
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT, index=True)
    trunk_id: Mapped[str | None] = mapped_column(ForeignKey("trunks.id"), default=None)
    agent_config_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_configs.id"), default=None
    )
    starts_at: Mapped[datetime | None] = mapped_column(default=None)
    ends_at: Mapped[datetime | None] = mapped_column(default=None)
    #: ``CallingWindow.to_dict()``: per-weekday local-time intervals.
    calling_window: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tz_policy: Mapped[str] = mapped_column(String(16), default="contact")
    default_tz: Mapped[str] = mapped_column(String(64), default="UTC")
    default_region: Mapped[str] = mapped_column(String(2), default="US")
    max_cps: Mapped[float] = mapped_column(Float, default=1.0)
    max_concurrent: Mapped[int] = mapped_column(Integer, default=4)
    #: ``RetryPolicy.to_dict()``.
    retry_policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    amd_action: Mapped[str] = mapped_column(String(16), default=AmdAction.HANGUP)
    voicemail_message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("campaign_id", "phone_e164"),
        Index("ix_contacts_due", "campaign_id", "status", "next_attempt_at"),
    )
    id: Mapped[str] = _id("con")
    tenant_id: Mapped[str] = _tenant()
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    phone_e164: Mapped[str] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    #: Values for the agent's prompt (the CSV's other columns).
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: IANA zone, given or derived from the number; None when the number spans zones.
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default=ContactStatus.PENDING)
    suppressed_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    attempts_made: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    #: Row number in the uploaded file (1 = first data row), for error reports.
    source_row: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CallAttempt(Base):
    """One dial of one contact. Its ``state`` only moves forward, by compare-and-set
    (``callfleet.dialer.state``): the claim queued → dialing happens before any INVITE,
    so a redelivered task finds the attempt claimed and does nothing."""

    __tablename__ = "call_attempts"
    __table_args__ = (
        UniqueConstraint("contact_id", "attempt_number"),
        Index("ix_attempts_state_lease", "state", "lease_expires_at"),
    )
    id: Mapped[str] = _id("att")
    tenant_id: Mapped[str] = _tenant()
    campaign_id: Mapped[str | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True, default=None
    )
    contact_id: Mapped[str | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), default=None
    )
    attempt_number: Mapped[int] = mapped_column(Integer, default=1)
    direction: Mapped[str] = mapped_column(String(8), default="outbound")
    state: Mapped[str] = mapped_column(String(16), default=AttemptState.QUEUED)
    end_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    sip_code: Mapped[int | None] = mapped_column(Integer, default=None)
    sip_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    worker_id: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CallResult(Base):
    __tablename__ = "call_results"
    attempt_id: Mapped[str] = mapped_column(
        ForeignKey("call_attempts.id", ondelete="CASCADE"), primary_key=True
    )
    outcome: Mapped[str] = mapped_column(String(32))
    ring_s: Mapped[float | None] = mapped_column(Float, default=None)
    talk_s: Mapped[float | None] = mapped_column(Float, default=None)
    amd: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dtmf: Mapped[str] = mapped_column(String(200), default="")
    transfers: Mapped[list[Any]] = mapped_column(default=list)
    transcript: Mapped[list[Any]] = mapped_column(default=list)
    recording_path: Mapped[str | None] = mapped_column(String(500), default=None)
    #: Per-turn latency figures from the voice pipeline.
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CallEvent(Base):
    __tablename__ = "call_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    attempt_id: Mapped[str] = mapped_column(
        ForeignKey("call_attempts.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DncEntry(Base):
    __tablename__ = "dnc_entries"
    __table_args__ = (UniqueConstraint("tenant_id", "phone_e164"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = _tenant()
    phone_e164: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"
    id: Mapped[str] = _id("whs")
    tenant_id: Mapped[str] = _tenant()
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    #: Event types to send (empty: all).
    events: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_attempt_at"),)
    id: Mapped[str] = _id("whd")
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(40))
    #: The receiver's deduplication key: the same event never gets two keys.
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
