"""Self-tests for the real test peers: Debian's kamailio and baresip, driven over raw
SIP/RTP sockets. These start real processes on 127.0.0.1 with random free ports."""

from __future__ import annotations

import os
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from callfleet.media.analysis import tone_energy_ratio
from callfleet.media.frame import PCM16
from callfleet.media.g711 import ulaw_decode, ulaw_encode
from callfleet.media.mix import rms_dbfs
from callfleet.media.tones import sine
from callfleet.media.wav import read_wav

from .audio import rtp_packet, rtp_payload
from .baresip import Baresip
from .kamailio import Kamailio
from .ports import free_port, free_port_pair, port_in_use, wait_for_port
from .sip import SipMessage, UdpSipClient, authorization_header, pcmu_sdp

# kamailio and baresip are installed by .ci/run: a missing one fails these tests.
pytestmark = pytest.mark.timeout(30)

USERS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    k = Kamailio(USERS, tmp_path, tls=True)
    try:
        k.start()
        yield k
    finally:
        pid = k.pid
        k.stop()
    assert not k.running
    if pid is not None:  # the whole process group (main + workers) is gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


@pytest.fixture
def rtp_sock() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def client() -> Iterator[UdpSipClient]:
    c = UdpSipClient(user="tester")
    try:
        yield c
    finally:
        c.close()


def _sdp_audio_port(msg: SipMessage) -> int:
    m = re.search(rb"^m=audio (\d+) ", msg.body, re.M)
    assert m, msg.text()
    return int(m.group(1))


def _register(
    client: UdpSipClient, k: Kamailio, user: str, password: str, expires: int = 60
) -> tuple[SipMessage, SipMessage]:
    """REGISTER without, then with credentials; return (challenge, final response)."""
    aor = k.aor(user)
    ruri = f"sip:{k.domain}"
    req = client.request(
        "REGISTER", ruri, from_uri=aor, to_uri=aor, extra_headers=[("Expires", str(expires))]
    )
    client.send(req, (k.host, k.port))
    challenge = client.wait_for(call_id=req.call_id, final=True)
    if challenge.status != 401:
        return challenge, challenge
    auth = authorization_header(
        challenge.header("WWW-Authenticate") or "",
        username=user,
        password=password,
        method="REGISTER",
        uri=ruri,
    )
    req2 = client.request(
        "REGISTER",
        ruri,
        from_uri=aor,
        to_uri=aor,
        call_id=req.call_id,
        cseq=2,
        extra_headers=[("Expires", str(expires)), ("Authorization", auth)],
    )
    client.send(req2, (k.host, k.port))
    return challenge, client.wait_for(call_id=req.call_id, final=True)


def _invite_via_proxy(
    client: UdpSipClient,
    k: Kamailio,
    *,
    from_user: str,
    password: str,
    to_uri: str,
    body: bytes,
) -> tuple[SipMessage, SipMessage, SipMessage]:
    """INVITE through kamailio answering its 407; return (407, authed INVITE, final)."""
    from_uri = k.aor(from_user)
    dest = (k.host, k.port)
    inv = client.request("INVITE", to_uri, from_uri=from_uri, to_uri=to_uri, body=body)
    client.send(inv, dest)
    challenge = client.wait_for(call_id=inv.call_id, final=True)
    assert challenge.status == 407, challenge.text()
    client.send(client.ack_for(inv, challenge), dest)
    auth = authorization_header(
        challenge.header("Proxy-Authenticate") or "",
        username=from_user,
        password=password,
        method="INVITE",
        uri=to_uri,
    )
    from_tag = inv.from_tag
    inv2 = client.request(
        "INVITE",
        to_uri,
        from_uri=from_uri,
        to_uri=to_uri,
        call_id=inv.call_id,
        cseq=2,
        from_tag=from_tag,
        extra_headers=[("Proxy-Authorization", auth)],
        body=body,
    )
    client.send(inv2, dest)
    final = client.wait_for(call_id=inv.call_id, method="INVITE", final=True, timeout_s=8)
    if final.status >= 300:
        client.send(client.ack_for(inv2, final), dest)
    return challenge, inv2, final


# -- ports ----------------------------------------------------------------------------


def test_ports_helpers() -> None:
    port = free_port_pair()
    assert not port_in_use(port, "udp") and not port_in_use(port, "tcp")
    assert 1024 < free_port("udp") < 65536
    srv = socket.create_server(("127.0.0.1", free_port("tcp")))
    try:
        wait_for_port(srv.getsockname()[1], "tcp", timeout_s=1)
    finally:
        srv.close()
    with pytest.raises(TimeoutError):
        wait_for_port(free_port("tcp"), "tcp", timeout_s=0.2)


# -- kamailio -------------------------------------------------------------------------


def test_kamailio_register_digest(kamailio: Kamailio, client: UdpSipClient) -> None:
    challenge, ok = _register(client, kamailio, "alice", USERS["alice"])
    assert challenge.status == 401, challenge.text()
    www = challenge.header("WWW-Authenticate") or ""
    assert www.startswith("Digest "), www
    assert 'realm="127.0.0.1"' in www and "nonce=" in www
    assert ok.status == 200, ok.text()
    assert any(f":{client.port}" in c for c in ok.header_values("Contact")), ok.text()

    _, wrong = _register(client, kamailio, "bob", "not-the-password")
    assert wrong.status == 403, wrong.text()
    _, unknown = _register(client, kamailio, "mallory", "whatever")
    assert unknown.status == 403, unknown.text()
    assert "REGISTER" in kamailio.log_text()


def test_kamailio_invite_auth_and_404(
    kamailio: Kamailio, client: UdpSipClient, rtp_sock: socket.socket
) -> None:
    body = pcmu_sdp(rtp_sock.getsockname()[1])
    _, _, final = _invite_via_proxy(
        client,
        kamailio,
        from_user="alice",
        password=USERS["alice"],
        to_uri=kamailio.aor("carol"),
        body=body,
    )
    assert final.status == 404, final.text()


def test_kamailio_tls_options(kamailio: Kamailio) -> None:
    ctx = ssl.create_default_context(cafile=str(kamailio.cert_path))
    with (
        socket.create_connection(("127.0.0.1", kamailio.tls_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        host, port = tls.getsockname()[:2]
        msg = (
            f"OPTIONS sip:127.0.0.1:{kamailio.tls_port};transport=tls SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS {host}:{port};rport;branch=z9hG4bKtls1\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:probe@invalid.test>;tag=t1\r\n"
            f"To: <sip:127.0.0.1:{kamailio.tls_port}>\r\n"
            "Call-ID: tls-options-1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        tls.sendall(msg.encode())
        data = tls.recv(65535)
    assert data.startswith(b"SIP/2.0 200"), data


# -- baresip --------------------------------------------------------------------------


def test_baresip_answers_raw_invite(
    tmp_path: Path, client: UdpSipClient, rtp_sock: socket.socket
) -> None:
    with Baresip(tmp_path) as peer:
        dest = ("127.0.0.1", peer.port)
        inv = client.request(
            "INVITE",
            peer.uri,
            from_uri="sip:tester@127.0.0.1",
            to_uri=peer.uri,
            body=pcmu_sdp(rtp_sock.getsockname()[1]),
        )
        client.send(inv, dest)
        ok = client.wait_for(call_id=inv.call_id, final=True, timeout_s=5)
        assert ok.status == 200, ok.text()
        assert b"c=IN IP4 127.0.0.1" in ok.body, ok.text()
        assert re.search(rb"^m=audio \d+ RTP/AVP 0\b", ok.body, re.M), ok.text()
        client.send(client.in_dialog("ACK", inv, ok, 1), dest)
        peer.wait_event("CALL_ESTABLISHED", 5)

        # Exchange ~1.5 s of audio: we send a 400 Hz tone, baresip sends its 1 kHz WAV.
        remote_rtp = ("127.0.0.1", _sdp_audio_port(ok))
        rtp_sock.settimeout(0.5)
        sent = ulaw_encode(sine(400, 75 * 20, 8000)).tobytes()
        heard_parts: list[PCM16] = []
        for i in range(75):
            rtp_sock.sendto(
                rtp_packet(sent[i * 160 : (i + 1) * 160], i, i * 160, 0x1234), remote_rtp
            )
            try:
                pt, payload = rtp_payload(rtp_sock.recv(2048))
            except TimeoutError:
                continue
            if pt == 0:
                heard_parts.append(ulaw_decode(payload))
            time.sleep(0.02)
        heard = np.concatenate(heard_parts) if heard_parts else np.zeros(0, np.int16)
        assert len(heard) > 160 * 25
        steady = heard[len(heard) // 2 :]
        assert tone_energy_ratio(steady, 1000, 8000) > 0.5
        assert tone_energy_ratio(steady, 400, 8000) < 0.1

        client.send(client.in_dialog("BYE", inv, ok, 2), dest)
        bye_ok = client.wait_for(call_id=inv.call_id, method="BYE", final=True)
        assert bye_ok.status == 200
        peer.wait_event("CALL_CLOSED", 5)

        recs = peer.recordings("dec")
        assert recs, peer.log_tail()
        samples, rate = read_wav(recs[-1])
        assert rate == 8000
        voiced = samples[samples != 0]
        assert rms_dbfs(voiced) > -27.3  # RMS above 1000
        mid = voiced[len(voiced) // 4 : 3 * len(voiced) // 4]
        assert tone_energy_ratio(mid, 400, 8000) > 0.5
    assert not peer.running


def test_baresip_registers_and_is_called_via_kamailio(
    kamailio: Kamailio, tmp_path: Path, client: UdpSipClient, rtp_sock: socket.socket
) -> None:
    with Baresip(
        tmp_path, user="alice", registrar=kamailio.hostport, password=USERS["alice"]
    ) as alice:
        alice.wait_registered(5)

        target = kamailio.aor("alice")
        challenge, invite, ok = _invite_via_proxy(
            client,
            kamailio,
            from_user="bob",
            password=USERS["bob"],
            to_uri=target,
            body=pcmu_sdp(rtp_sock.getsockname()[1]),
        )
        assert (challenge.header("Proxy-Authenticate") or "").startswith("Digest ")
        assert ok.status == 200, ok.text()
        rr = ok.header_values("Record-Route")
        assert rr and f"127.0.0.1:{kamailio.port}" in rr[0] and ";lr" in rr[0], ok.text()
        ack = client.in_dialog("ACK", invite, ok, 2)
        next_hop = client.next_hop(ack, (kamailio.host, kamailio.port))
        assert next_hop == (kamailio.host, kamailio.port)
        client.send(ack, next_hop)
        alice.wait_event("CALL_ESTABLISHED", 5)
        # Any in-dialog request follows the Record-Route through the proxy to baresip.
        info = client.in_dialog("INFO", invite, ok, 3)
        client.send(info, next_hop)
        info_resp = client.wait_for(call_id=ok.call_id, method="INFO", final=True)
        assert "baresip" in (info_resp.header("Server") or ""), info_resp.text()
        bye = client.in_dialog("BYE", invite, ok, 4)
        client.send(bye, next_hop)
        bye_ok = client.wait_for(call_id=ok.call_id, method="BYE", final=True)
        assert bye_ok.status == 200, bye_ok.text()
        alice.wait_event("CALL_CLOSED", 5)
        assert "REQ BYE" in kamailio.log_text()


def test_two_baresips_call_through_kamailio(kamailio: Kamailio, tmp_path: Path) -> None:
    with (
        Baresip(
            tmp_path, user="alice", registrar=kamailio.hostport, password=USERS["alice"]
        ) as alice,
        Baresip(tmp_path, user="bob", registrar=kamailio.hostport, password=USERS["bob"]) as bob,
    ):
        alice.wait_registered(5)
        bob.wait_registered(5)
        bob.dial(f"sip:alice@{kamailio.hostport}")
        alice.wait_event("CALL_ESTABLISHED", 8)
        bob.wait_event("CALL_ESTABLISHED", 8)
        time.sleep(1.0)
        bob.hangup()
        bob.wait_event("CALL_CLOSED", 5)
        alice.wait_event("CALL_CLOSED", 5)
    # Each side recorded the other's 1 kHz tone.
    for peer in (alice, bob):
        recs = peer.recordings("dec")
        assert recs, peer.log_tail()
        samples, rate = read_wav(recs[-1])
        voiced = samples[samples != 0]
        assert len(voiced) > 4000, (peer.name, len(voiced))
        mid = voiced[len(voiced) // 4 : 3 * len(voiced) // 4]
        assert tone_energy_ratio(mid, 1000, rate) > 0.5, peer.name
