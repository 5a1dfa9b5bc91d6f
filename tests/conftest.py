"""Shared fixtures: one SIP endpoint for the session (PJSUA2 allows one per process),
test phones in child processes, a self-signed TLS certificate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from callfleet.sip.config import EndpointConfig, Transport, TransportSpec
from callfleet.sip.endpoint import SipEndpoint
from callfleet.sip.testing import PhoneScript, TestPhone
from tests.peers.fixtures import postgres_server, redis_server  # noqa: F401  (shared fixtures)
from tests.peers.tls import make_self_signed_cert

#: Short RFC 3261 Timer B for the session endpoint, so that an unanswered INVITE frees
#: its call slot quickly.
TRANSACTION_TIMEOUT_S = 3.0

PhoneFactory = Callable[..., Awaitable[TestPhone]]


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI."""
    cert, key = make_self_signed_cert(tmp_path_factory.mktemp("tls"))
    return str(cert), str(key)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def endpoint(tls_cert: tuple[str, str]) -> AsyncIterator[SipEndpoint]:
    config = EndpointConfig(
        transports=(
            TransportSpec(Transport.UDP, "127.0.0.1", 0),
            TransportSpec(Transport.TCP, "127.0.0.1", 0),
            TransportSpec(
                Transport.TLS, "127.0.0.1", 0, tls_cert_file=tls_cert[0], tls_key_file=tls_cert[1]
            ),
        ),
        pjsip_log_level=2,
        transaction_timeout_s=TRANSACTION_TIMEOUT_S,
    )
    ep = SipEndpoint(config)
    await ep.start()
    yield ep
    await ep.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def clean_endpoint(endpoint: SipEndpoint) -> AsyncIterator[SipEndpoint]:
    """The session endpoint, with no incoming handler, and no call left up afterwards."""
    endpoint.on_incoming(None)  # type: ignore[arg-type]
    yield endpoint
    live = [c for c in endpoint.calls if not c.is_ended]
    await asyncio.gather(*(c.hangup() for c in live))
    endpoint.on_incoming(None)  # type: ignore[arg-type]
    assert not [c for c in endpoint.calls if not c.is_ended], f"calls left up: {endpoint.calls}"
    await endpoint.wait_idle(2.0)  # PJSIP frees a slot a poll or two after the call ended
    assert await endpoint.pjsip_call_slots() == 0, "PJSIP still holds call slots"


@pytest_asyncio.fixture(loop_scope="session")
async def phones(tls_cert: tuple[str, str]) -> AsyncIterator[PhoneFactory]:
    """``await phones(PhoneScript(...), name="bob", tcp=True)`` starts a test phone;
    all are stopped after the test."""
    started: list[TestPhone] = []

    async def make(script: PhoneScript | None = None, **kwargs: object) -> TestPhone:
        if kwargs.pop("tls", False):
            kwargs["tls_cert"] = tls_cert
        phone = TestPhone(script, **kwargs)  # type: ignore[arg-type]
        started.append(phone)
        return await phone.start()

    yield make
    await asyncio.gather(*(p.stop() for p in started))


@pytest.fixture
def record_dir(tmp_path: Path) -> str:
    return str(tmp_path)
