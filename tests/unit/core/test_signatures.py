"""Webhook signatures: what dsp sends verifies; tampering, replays and wrong keys do not."""

from __future__ import annotations

import pytest

from processor.webhooks.signatures import InvalidSignature, sign, signature_headers, verify

BODY = b'{"event_id":"e1"}'


def test_headers_verify() -> None:
    headers = signature_headers("s3cret", BODY, clock=lambda: 1_700_000_000.9)
    assert headers["X-DSP-Timestamp"] == "1700000000"
    assert headers["X-DSP-Signature"].startswith("sha256=")
    verify(
        "s3cret", BODY, headers["X-DSP-Signature"], headers["X-DSP-Timestamp"], now=1_700_000_100
    )


def test_the_timestamp_is_signed() -> None:
    signature = sign("s3cret", BODY, 1_700_000_000)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify("s3cret", BODY, signature, "1700000001", now=1_700_000_000)


@pytest.mark.parametrize(
    ("body", "secret", "timestamp", "now", "message"),
    [
        (BODY + b" ", "s3cret", "1700000000", 1_700_000_000, "does not match"),
        (BODY, "other", "1700000000", 1_700_000_000, "does not match"),
        (BODY, "s3cret", "1700000000", 1_700_000_301, "tolerance"),
        (BODY, "s3cret", "1700000000", 1_699_999_600, "tolerance"),
        (BODY, "s3cret", "yesterday", 1_700_000_000, "not a Unix time"),
        (BODY, "s3cret", None, 1_700_000_000, "missing"),
    ],
)
def test_rejections(
    body: bytes, secret: str, timestamp: str | None, now: float, message: str
) -> None:
    signature = sign("s3cret", BODY, 1_700_000_000)
    with pytest.raises(InvalidSignature, match=message):
        verify(secret, body, signature, timestamp, now=now)


def test_rotation_accepts_any_listed_secret() -> None:
    signature = sign("new", BODY, 1_700_000_000)
    verify(["old", "new"], BODY, signature, "1700000000", now=1_700_000_000)
    with pytest.raises(InvalidSignature):
        verify(["old"], BODY, signature, "1700000000", now=1_700_000_000)
