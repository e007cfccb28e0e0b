"""Webhook signatures: how dsp signs a delivery, and how a receiver checks it.

The default is the Standard Webhooks format (https://www.standardwebhooks.com), which
receivers verify with off-the-shelf libraries (``standardwebhooks``, ``svix``, and their
ports to other languages)::

    webhook-id: <the record's eventID: the same on every attempt (the idempotency key)>
    webhook-timestamp: 1763856000               (Unix seconds when this attempt was sent)
    webhook-signature: v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)> ...

Secrets are ``whsec_`` followed by the base64 of the key (24 to 64 random bytes). During a
rotation a route or subscription lists several secrets; every delivery then carries one
``v1,`` signature per secret, separated by spaces, so receivers on the old or the new
secret both verify. Receiver side, in Python::

    from standardwebhooks import Webhook

    payload = Webhook(secret).verify(body, headers)   # raises WebhookVerificationError

Legacy format (``signature = "x-dsp"``), kept for receivers written against it; it signs with
the first secret only::

    X-DSP-Timestamp: 1763856000                 (Unix seconds when this attempt was sent)
    X-DSP-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

The timestamp is inside the signed text, so a receiver that rejects old timestamps (default
tolerance: 5 minutes) rejects a captured request replayed later. Retries are signed afresh
with their own timestamp; their ``Idempotency-Key`` stays the same.

Receiver side::

    from processor.webhooks.signatures import InvalidSignature, verify

    try:
        verify(secret, body, headers["X-DSP-Signature"], headers["X-DSP-Timestamp"])
    except InvalidSignature as exc:
        return 401, str(exc)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
import time
from collections.abc import Callable, Sequence

from processor.errors import InvalidSignature

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "InvalidSignature",
    "new_secret",
    "secret_key",
    "sign",
    "signature_headers",
    "standard_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError says what is wrong."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(
            "a Standard Webhooks secret looks like whsec_<base64 of 24 to 64 random bytes>; "
            "make one with: python -c 'from processor.webhooks.signatures import new_secret; "
            "print(new_secret())'"
        )
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"the key is {len(key)} bytes; Standard Webhooks keys have 24 to 64")
    return key


def new_secret() -> str:
    """A fresh secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(32)).decode()


def standard_headers(
    message_id: str,
    secrets: Sequence[str],
    body: bytes,
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt, one signature per secret."""
    timestamp = str(int(clock()))
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signatures,
    }


SIGNATURE_HEADER = "X-DSP-Signature"
TIMESTAMP_HEADER = "X-DSP-Timestamp"
DEFAULT_TOLERANCE_S = 300.0


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-DSP-Signature`` value for ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_headers(
    secret: str, body: bytes, *, clock: Callable[[], float] = time.time
) -> dict[str, str]:
    """Both headers for one attempt, timestamped now."""
    timestamp = int(clock())
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, body, timestamp)}


def verify(
    secret: str | Sequence[str],
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise :class:`InvalidSignature` unless the headers prove ``body`` came from dsp.

    ``secret`` may be several (during a rotation, old and new); ``body`` must be the raw bytes
    received, before any JSON parsing.
    """
    if not signature or not timestamp:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is not a Unix time: {timestamp!r}") from None
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        raise InvalidSignature(
            f"{TIMESTAMP_HEADER} is {current - sent:+.0f} s from now (tolerance {tolerance_s:g} s)"
        )
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not any(hmac.compare_digest(sign(s, body, sent), signature) for s in secrets):
        raise InvalidSignature("signature does not match the body and timestamp")
