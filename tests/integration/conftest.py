"""Database fixtures: every storage test runs on SQLite and on a private PostgreSQL; the
end-to-end dialer fixtures (`dialer_env`, `worker_factory`) from dialer_env.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from callfleet.dialer.db import make_engine, make_sessionmaker, migrate
from callfleet.dialer.models import Campaign, Tenant
from tests.integration.dialer_env import dialer_env, worker_factory  # noqa: F401  (e2e fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database URL: a SQLite file, or a new database on the private
    PostgreSQL server of the session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'callfleet.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.fresh_database(f"t_{abs(hash(request.node.nodeid)) % 10**12}")
    migrate(url)
    yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def campaign(sessions: sessionmaker[Session]) -> Campaign:
    with sessions() as s, s.begin():
        tenant = Tenant(name="acme")
        s.add(tenant)
        s.flush()
        camp = Campaign(tenant_id=tenant.id, name="spring reminders", default_region="US")
        s.add(camp)
    return camp
