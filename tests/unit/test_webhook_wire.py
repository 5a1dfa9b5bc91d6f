"""Webhook wire format: the event body, its exact bytes and errors, the Stripe-style
signature (checked against ``openssl dgst -sha256 -hmac``) and the retry backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from callfleet.dialer.webhook_wire import EVENT_TYPES, SignatureError, WebhookEvent, sign, verify
from callfleet.dialer.webhooks import backoff_ceiling_s, backoff_s

SECRET = "whsec_test"
T = 1714564800  # 2024-05-01T12:00:00Z
BODY = (
    b'{"created_at":"2024-05-01T12:00:00Z","data":{"attempt_id":"att_1","outcome":"completed",'
    b'"talk_s":42.5},"id":"att_1:completed","tenant_id":"ten_1","type":"call.completed"}'
)
# printf '%s' "1714564800.$BODY" | openssl dgst -sha256 -hmac whsec_test
SIGNATURE = "t=1714564800,v1=b3dfc5edbe5366f025485b7230c6c0a40aed0e044129e9af71a469a9fb6ed7b8"
EVENT = WebhookEvent(
    id="att_1:completed",
    type="call.completed",
    created_at=datetime(2024, 5, 1, 12, tzinfo=UTC),
    tenant_id="ten_1",
    data={"attempt_id": "att_1", "outcome": "completed", "talk_s": 42.5},
)


class TestWebhookEvent:
    def test_event_types(self) -> None:
        assert EVENT_TYPES == (
            "call.completed",
            "call.voicemail",
            "call.transferred",
            "call.inbound",
            "campaign.completed",
        )

    def test_exact_bytes_and_round_trip(self) -> None:
        assert EVENT.to_json() == BODY
        assert WebhookEvent.parse(BODY) == EVENT
        assert WebhookEvent.parse(BODY).to_json() == BODY

    def test_microseconds_and_utf8_round_trip(self) -> None:
        event = WebhookEvent(
            "k",
            "call.inbound",
            datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC),
            "ten_1",
            {"name": "Zoë", "nested": {"b": [1, 2], "a": None}},
        )
        body = event.to_json()
        assert (
            body
            == (
                '{"created_at":"2024-05-01T14:00:00.123456Z","data":{"name":"Zoë",'
                '"nested":{"a":null,"b":[1,2]}},"id":"k","tenant_id":"ten_1","type":"call.inbound"}'
            ).encode()
        )
        assert WebhookEvent.parse(body) == event

    def test_other_zones_are_written_in_utc(self) -> None:
        paris = datetime(2024, 5, 1, 14, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
        event = WebhookEvent("k", "campaign.completed", paris, "ten_1")
        assert event.to_dict()["created_at"] == "2024-05-01T14:00:00Z"

    def test_unknown_fields_are_ignored_and_data_defaults_to_empty(self) -> None:
        body = (
            b'{"id":"k","type":"call.voicemail","created_at":"2024-05-01T12:00:00Z",'
            b'"tenant_id":"ten_1","api_version":"2025-01"}'
        )
        assert WebhookEvent.parse(body) == WebhookEvent(
            "k", "call.voicemail", datetime(2024, 5, 1, 12, tzinfo=UTC), "ten_1", {}
        )

    @pytest.mark.parametrize(
        ("body", "error"),
        [
            (b"", "webhook body is not JSON"),
            (BODY[:-1], "webhook body is not JSON"),  # truncated
            (BODY[:40], "webhook body is not JSON"),
            (b"\xff\xfe{}", "webhook body is not JSON"),
            (b"{'id': 'k'}", "webhook body is not JSON"),
            (b"[]", "webhook body must be a JSON object, got list"),
            (b"null", "webhook body must be a JSON object, got NoneType"),
            (BODY.replace(b'"id":"att_1:completed",', b""), "webhook event has no id"),
            (BODY.replace(b'"id":"att_1:completed"', b'"id":""'), "webhook event has no id"),
            (
                BODY.replace(b'"id":"att_1:completed"', b'"id":7'),
                "webhook event id must be a string, got int",
            ),
            (BODY.replace(b',"type":"call.completed"', b""), "webhook event has no type"),
            (BODY.replace(b'"type":"call.completed"', b'"type":null'), "webhook event has no type"),
            (
                BODY.replace(b'"type":"call.completed"', b'"type":"x"'),
                "webhook event type 'x' is unknown",
            ),
            (
                BODY.replace(b'"type":"call.completed"', b'"type":["call.completed"]'),
                "webhook event type must be a string, got list",
            ),
            (
                BODY.replace(b'"created_at":"2024-05-01T12:00:00Z",', b""),
                "webhook event has no created_at",
            ),
            (
                BODY.replace(b"2024-05-01T12:00:00Z", b"2024-05-01T12:00:00+00:00"),
                "webhook event created_at '2024-05-01T12:00:00+00:00' is not an ISO 8601 UTC time",
            ),
            (
                BODY.replace(b"2024-05-01T12:00:00Z", b"2024-05-01 12:00:00Z"),
                "webhook event created_at '2024-05-01 12:00:00Z' is not an ISO 8601 UTC time",
            ),
            (
                BODY.replace(b"2024-05-01T12:00:00Z", b"2024-13-01T12:00:00Z"),
                "webhook event created_at '2024-13-01T12:00:00Z' is not an ISO 8601 UTC time",
            ),
            (
                BODY.replace(b'"created_at":"2024-05-01T12:00:00Z"', b'"created_at":1714564800'),
                "webhook event created_at must be a string, got int",
            ),
            (BODY.replace(b',"tenant_id":"ten_1"', b""), "webhook event has no tenant_id"),
            (
                BODY.replace(
                    b'{"attempt_id":"att_1","outcome":"completed","talk_s":42.5}', b'["att_1"]'
                ),
                "webhook event data must be an object, got list",
            ),
        ],
    )
    def test_malformed_bodies(self, body: bytes, error: str) -> None:
        with pytest.raises(ValueError) as info:
            WebhookEvent.parse(body)
        assert str(info.value) == error

    def test_constructor_checks(self) -> None:
        with pytest.raises(ValueError) as info:
            WebhookEvent("k", "call.exploded", datetime(2024, 5, 1, tzinfo=UTC), "ten_1")
        assert str(info.value) == "webhook event type 'call.exploded' is unknown"
        with pytest.raises(ValueError) as info:
            WebhookEvent("k", "call.inbound", datetime(2024, 5, 1, 12), "ten_1")
        assert str(info.value) == "webhook event created_at 2024-05-01T12:00:00 has no time zone"

    def test_not_json_serialisable_data(self) -> None:
        with pytest.raises(ValueError, match="Out of range float values"):
            WebhookEvent("k", "call.inbound", EVENT.created_at, "t", {"x": float("nan")}).to_json()


class TestSignature:
    def test_sign_matches_openssl(self) -> None:
        assert sign(SECRET, BODY, T) == SIGNATURE

    @pytest.mark.parametrize(
        "now",
        [
            datetime(2024, 5, 1, 12, tzinfo=UTC),
            T,
            T + 300,  # the tolerance is inclusive, both ways
            T - 300,
            float(T) + 299.9,
            datetime(2024, 5, 1, 14, 4, 59, tzinfo=ZoneInfo("Europe/Paris")),  # 12:04:59Z
        ],
    )
    def test_round_trip(self, now: datetime | float) -> None:
        verify(SECRET, sign(SECRET, BODY, T), BODY, now)

    def test_several_v1_signatures_one_of_which_matches(self) -> None:
        """A sender rotating its secret sends one v1 per secret (as Stripe does)."""
        other = sign("whsec_old", BODY, T).split(",")[1]
        verify(SECRET, f"t={T}, {other}, {SIGNATURE.split(',')[1]}", BODY, T)
        verify(SECRET, f"v1=00,{SIGNATURE},v0=ignored", BODY, T)

    def test_custom_tolerance(self) -> None:
        verify(SECRET, SIGNATURE, BODY, T + 3600, tolerance_s=3600)
        with pytest.raises(SignatureError) as info:
            verify(SECRET, SIGNATURE, BODY, T + 11, tolerance_s=10)
        assert str(info.value) == (
            "webhook timestamp 1714564800 is outside the tolerance of 10 s (now 1714564811)"
        )

    @pytest.mark.parametrize(
        ("header", "body", "now", "error"),
        [
            (None, BODY, T, "X-Callfleet-Signature header is missing"),
            ("", BODY, T, "X-Callfleet-Signature header is missing"),
            (
                "garbage",
                BODY,
                T,
                "X-Callfleet-Signature header is malformed: 'garbage' is not key=value",
            ),
            (
                f"{SIGNATURE},",
                BODY,
                T,
                "X-Callfleet-Signature header is malformed: '' is not key=value",
            ),
            (
                SIGNATURE.split(",")[1],
                BODY,
                T,
                "X-Callfleet-Signature header is malformed: no timestamp",
            ),
            (
                SIGNATURE.replace("t=1714564800", "t=17145648e2"),
                BODY,
                T,
                "X-Callfleet-Signature header is malformed: timestamp '17145648e2' "
                "is not unix seconds",
            ),
            (
                SIGNATURE.replace("t=1714564800", "t=-1714564800"),
                BODY,
                T,
                "X-Callfleet-Signature header is malformed: timestamp '-1714564800' "
                "is not unix seconds",
            ),
            (
                "t=1714564800",
                BODY,
                T,
                "X-Callfleet-Signature header is malformed: no v1 signature",
            ),
            (
                SIGNATURE.replace("v1=", "v0="),
                BODY,
                T,
                "X-Callfleet-Signature header is malformed: no v1 signature",
            ),
            (
                SIGNATURE,
                BODY,
                T + 301,
                "webhook timestamp 1714564800 is outside the tolerance of 300 s (now 1714565101)",
            ),
            (
                SIGNATURE,
                BODY,
                T - 301,
                "webhook timestamp 1714564800 is outside the tolerance of 300 s (now 1714564499)",
            ),
            (SIGNATURE, BODY + b" ", T, "webhook signature does not match"),
            (SIGNATURE, BODY.replace(b"42.5", b"42.6"), T, "webhook signature does not match"),
            (sign("whsec_other", BODY, T), BODY, T, "webhook signature does not match"),
            (  # the timestamp is signed too: it cannot be moved forward
                SIGNATURE.replace("t=1714564800", "t=1714564900"),
                BODY,
                T + 100,
                "webhook signature does not match",
            ),
            (SIGNATURE[:-1], BODY, T, "webhook signature does not match"),
            (
                SIGNATURE.upper().replace("T=", "t=").replace("V1=", "v1="),
                BODY,
                T,
                "webhook signature does not match",
            ),
            ("t=1714564800,v1=zzé", BODY, T, "webhook signature does not match"),
        ],
    )
    def test_verify_errors(self, header: str | None, body: bytes, now: float, error: str) -> None:
        with pytest.raises(SignatureError) as info:
            verify(SECRET, header, body, now)
        assert str(info.value) == error
        assert isinstance(info.value, ValueError)


class _Top(random.Random):
    """Always draws the top of the range, to expose the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


class TestBackoff:
    def test_ceiling_doubles_from_10_s_up_to_1_h(self) -> None:
        assert [backoff_s(n, _Top()) for n in range(1, 12)] == [
            10,
            20,
            40,
            80,
            160,
            320,
            640,
            1280,
            2560,
            3600,
            3600,
        ]
        assert backoff_s(10_000, _Top()) == 3600
        assert [backoff_ceiling_s(n) for n in (0, 1, 2, 10, 10_000)] == [10, 10, 20, 3600, 3600]
        assert backoff_ceiling_s(3, base_s=1, factor=3, cap_s=5) == 5

    def test_full_jitter_is_seeded(self) -> None:
        rng, same = random.Random(3), random.Random(3)
        delays = [backoff_s(n, rng) for n in range(1, 20)]
        assert delays == [same.uniform(0, min(3600, 10 * 2 ** (n - 1))) for n in range(1, 20)]
        assert all(0 <= d <= min(3600, 10 * 2 ** (n - 1)) for n, d in enumerate(delays, 1))
