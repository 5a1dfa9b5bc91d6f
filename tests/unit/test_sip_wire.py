"""Wire formats parsed by callfleet.sip: URIs, SIP message heads, SDP edits; config checks."""

from __future__ import annotations

import pytest

from callfleet.sip.config import EndpointConfig, TransportSpec, Trunk
from callfleet.sip.dtmf import parse_dtmf_string
from callfleet.sip.message import SipMessageHead, display_name, uri_user
from callfleet.sip.sdp import prefer_codecs
from callfleet.sip.status import EndReason, end_reason_for
from callfleet.sip.uri import SipUri, normalise_number, target_uri

# An INVITE as PJSIP sends it (captured on loopback), with a folded header added.
INVITE = (
    "INVITE sip:1800555@127.0.0.1:5080 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:42074;rport;branch=z9hG4bKPjmlMcr8\r\n"
    "Max-Forwards: 70\r\n"
    'f: "Alice Smith" <sip:+15550001111@carrier.example>;tag=8Dru0cJj\r\n'
    "To: sip:1800555@127.0.0.1\r\n"
    "Contact: <sip:callfleet@127.0.0.1:42074;ob>\r\n"
    "Call-ID: oNQUpIbdHUoP\r\n"
    "CSeq: 6669 INVITE\r\n"
    "X-Long: first\r\n"
    "  second\r\n"
    "X-Long: again\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "v=0\r\n"
)

SDP_OFFER = (
    "v=0\r\n"
    "o=- 3912 3912 IN IP4 127.0.0.1\r\n"
    "s=pjmedia\r\n"
    "t=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8 9 101\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "a=rtcp:4001 IN IP4 127.0.0.1\r\n"
    "a=sendrecv\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
)


class TestSipUri:
    @pytest.mark.parametrize(
        "text",
        [
            "sip:bob@example.com",
            "sip:+15550100@10.0.0.1:5080;transport=tcp",
            "sips:bob@[2001:db8::1]:5061",
            "sip:example.com",
            "sip:bob@example.com?X-Foo=bar",
        ],
    )
    def test_round_trip(self, text: str) -> None:
        assert str(SipUri.parse(text)) == text

    def test_name_addr(self) -> None:
        uri = SipUri.parse('"Bob" <sip:bob@example.com:5070>')
        assert (uri.user, uri.host, uri.port) == ("bob", "example.com", 5070)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("sip:", "invalid SIP URI: 'sip:'"),
            ("http://x", "invalid SIP URI: 'http://x'"),
            ("sip:bob@exa mple.com", "invalid SIP URI: 'sip:bob@exa mple.com'"),
            ("sip:bob@host:0", "invalid SIP URI: 'sip:bob@host:0' (port 0 out of range)"),
            (
                "sip:bob@host:70000",
                "invalid SIP URI: 'sip:bob@host:70000' (port 70000 out of range)",
            ),
        ],
    )
    def test_invalid(self, text: str, message: str) -> None:
        with pytest.raises(ValueError) as err:
            SipUri.parse(text)
        assert str(err.value) == message

    def test_number_to_trunk_uri(self) -> None:
        assert str(target_uri("+1 (555) 010-2000", host="trunk.example:5060")) == (
            "sip:+15550102000@trunk.example:5060"
        )
        assert str(target_uri("100", host="pbx", transport="tcp")) == "sip:100@pbx;transport=tcp"

    def test_bad_number(self) -> None:
        with pytest.raises(ValueError) as err:
            normalise_number("555-CALL-NOW")
        assert str(err.value) == "invalid phone number or SIP URI: '555-CALL-NOW'"


class TestSipMessageHead:
    def test_parse_invite(self) -> None:
        head = SipMessageHead.parse(INVITE)
        assert head.method == "INVITE"
        assert head.request_uri == "sip:1800555@127.0.0.1:5080"
        assert (
            head.header("From") == '"Alice Smith" <sip:+15550001111@carrier.example>;tag=8Dru0cJj'
        )
        assert head.headers["x-long"] == ["first second", "again"]
        assert uri_user(head.header("from")) == "+15550001111"
        assert display_name(head.header("from")) == "Alice Smith"
        assert uri_user(head.request_uri) == "1800555"
        assert uri_user(head.header("to")) == "1800555"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "not a SIP request line: ''"),
            ("SIP/2.0 200 OK\r\n\r\n", "not a SIP request line: 'SIP/2.0 200 OK'"),
            ("INVITE sip:a@b HTTP/1.1\r\n", "not a SIP request line: 'INVITE sip:a@b HTTP/1.1'"),
            (
                "INVITE sip:a@b SIP/2.0\r\nNoColonHere\r\n\r\n",
                "SIP header line has no colon: 'NoColonHere'",
            ),
        ],
    )
    def test_invalid(self, text: str, message: str) -> None:
        with pytest.raises(ValueError) as err:
            SipMessageHead.parse(text)
        assert str(err.value) == message

    def test_truncated_message_keeps_what_arrived(self) -> None:
        head = SipMessageHead.parse(INVITE[:200])
        assert head.method == "INVITE" and head.header("via") is not None


class TestSdp:
    def test_trunk_order_and_filter(self) -> None:
        out = prefer_codecs(SDP_OFFER, ["PCMA", "G722"])
        assert "m=audio 4000 RTP/AVP 8 9 101\r\n" in out
        assert "a=rtpmap:0 " not in out
        assert "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n" in out
        assert out.startswith("v=0\r\no=- 3912")

    def test_no_match_leaves_offer_alone(self) -> None:
        assert prefer_codecs(SDP_OFFER, ["OPUS"]) == SDP_OFFER

    def test_no_audio_line(self) -> None:
        assert prefer_codecs("v=0\r\n", ["PCMU"]) == "v=0\r\n"

    def test_malformed_m_line(self) -> None:
        with pytest.raises(ValueError) as err:
            prefer_codecs("v=0\r\nm=audio 4000\r\n", ["PCMU"])
        assert str(err.value) == "malformed SDP m-line: 'm=audio 4000'"


class TestConfig:
    def test_trunk_uris(self) -> None:
        trunk = Trunk(
            "carrier",
            "sip.carrier.example",
            username="acme",
            password="pw",
            transport="tcp",
            register=True,
            outbound_proxy="proxy.example:5070",  # type: ignore[arg-type]
        )
        assert trunk.account_uri() == "sip:acme@sip.carrier.example"
        assert trunk.registrar_uri() == "sip:sip.carrier.example;transport=tcp"
        assert trunk.proxy_uri() == "sip:proxy.example:5070;transport=tcp;lr"
        assert "pw" not in repr(trunk)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"host": "bad host"}, "trunk 't' host must be host[:port], got 'bad host'"),
            (
                {"codecs": ("OPUS",)},
                "trunk 't' codec 'OPUS' is not supported (supported: PCMU, PCMA, G722)",
            ),
            ({"codecs": ()}, "trunk 't' must offer at least one codec"),
            ({"register": True}, "trunk 't' registers but has no username"),
            (
                {"headers": {"X-A": "1\r\nVia: x"}},
                "trunk 't' header 'X-A' is not a valid SIP header",
            ),
        ],
    )
    def test_trunk_errors(self, kwargs: dict[str, object], message: str) -> None:
        args: dict[str, object] = {"name": "t", "host": "pbx.example"} | kwargs
        with pytest.raises(ValueError) as err:
            Trunk(**args)  # type: ignore[arg-type]
        assert str(err.value) == message

    def test_endpoint_errors(self) -> None:
        with pytest.raises(ValueError, match="port must be 0-65535, got 70000"):
            TransportSpec(port=70000)
        with pytest.raises(ValueError, match="trunk names must be unique"):
            EndpointConfig(trunks=(Trunk("a", "h"), Trunk("a", "h2")))
        with pytest.raises(ValueError, match="max_calls must be >= 1, got 0"):
            EndpointConfig(max_calls=0)


def test_dtmf_strings() -> None:
    assert parse_dtmf_string("12w#*ab") == ["1", "2", "w", "#", "*", "A", "B"]
    with pytest.raises(ValueError) as err:
        parse_dtmf_string("12x")
    assert str(err.value) == (
        "DTMF string '12x' has invalid character 'x' at position 2; "
        "allowed: 0-9 * # A-D and w (500 ms pause)"
    )


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (486, EndReason.BUSY),
        (600, EndReason.BUSY),
        (408, EndReason.NO_ANSWER),
        (480, EndReason.NO_ANSWER),
        (603, EndReason.DECLINED),
        (404, EndReason.INVALID_NUMBER),
        (484, EndReason.INVALID_NUMBER),
        (485, EndReason.INVALID_NUMBER),
        (503, EndReason.CONGESTION),
        (487, EndReason.CANCELLED),
        (415, EndReason.FAILED),
    ],
)
def test_end_reasons(code: int, reason: EndReason) -> None:
    assert end_reason_for(code, answered=False) is reason
    assert end_reason_for(code, answered=True) is EndReason.COMPLETED


def test_fast_frame_copy_matches_slow_path() -> None:
    import numpy as np
    import pjsua2 as pj

    from callfleet.sip import framecopy

    assert framecopy.FAST_PATH
    vec = pj.ByteVector()
    samples = np.arange(-160, 160, dtype=np.int16)
    framecopy.write_pcm16(vec, samples)
    assert bytes(vec) == samples.tobytes()
    assert np.array_equal(framecopy.read_pcm16(vec), samples)


def test_phone_script_json_errors() -> None:
    from callfleet.sip.testing.script import PhoneScript

    assert PhoneScript.from_json(PhoneScript(tone_hz=440).to_json()).tone_hz == 440
    with pytest.raises(ValueError) as err:
        PhoneScript.from_json('{"tone_hz": 440, "volume": 3}')
    assert str(err.value) == "unknown test phone script keys: ['volume']"
    with pytest.raises(ValueError, match="Expecting"):
        PhoneScript.from_json('{"tone_hz": ')
    with pytest.raises(ValueError) as err:
        PhoneScript.from_json('{"answer": "maybe"}')
    assert str(err.value) == "script answer must be answer, reject or ignore: 'maybe'"
