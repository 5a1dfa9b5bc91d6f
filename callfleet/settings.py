"""Process settings, from ``CALLFLEET_*`` environment variables (pydantic-settings).

Defaults run everything on one machine: SQLite in the working directory, Redis on
localhost. Production sets ``CALLFLEET_DATABASE_URL`` (PostgreSQL) and
``CALLFLEET_REDIS_URL``.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLFLEET_", extra="ignore")

    #: SQLAlchemy URL of the dialer database.
    database_url: str = "sqlite:///callfleet.db"
    #: Celery broker, pacing buckets, leases and live-call command channels.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: SIP listening address and port of this call-host process (0: any free port).
    sip_bind: str = "0.0.0.0"
    sip_port: int = 5060
    sip_public_address: str | None = None
    #: Identifies this process in attempt claims and leases.
    worker_id: str = Field(default_factory=_default_worker_id)
    #: A live call's claim lease (s); renewed every third of it while the call lives.
    call_lease_s: float = 30.0
    #: The longest call allowed (s). Celery's Redis visibility timeout is set above it,
    #: so a long call's task is never redelivered while it still runs.
    max_call_s: float = 3600.0
    #: How long an outbound call may ring before it counts as not answered (s).
    ring_timeout_s: float = 45.0
    #: How long a call task waits for a pacing slot before it is retried later (s).
    pacing_wait_s: float = 30.0
    #: Where call recordings go (empty: no recording).
    recordings_dir: str = ""


@lru_cache
def get_settings() -> Settings:
    return Settings()
