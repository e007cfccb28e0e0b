"""Webhook signatures: how dsp signs a delivery, and how a receiver written in Python checks it.

Every signed POST carries two headers::

    X-DSP-Timestamp: 1763856000                 (Unix seconds when this attempt was sent)
    X-DSP-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

The timestamp is inside the signed text, so a receiver that rejects old timestamps (default
tolerance: 5 minutes) rejects a captured request replayed later. Retries are signed afresh
with their own timestamp; their ``Idempotency-Key`` stays the same.

Receiver side::

    from processor.signatures import InvalidSignature, verify

    try:
        verify(secret, body, headers["X-DSP-Signature"], headers["X-DSP-Timestamp"])
    except InvalidSignature as exc:
        return 401, str(exc)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "InvalidSignature",
    "sign",
    "signature_headers",
    "verify",
]

SIGNATURE_HEADER = "X-DSP-Signature"
TIMESTAMP_HEADER = "X-DSP-Timestamp"
DEFAULT_TOLERANCE_S = 300.0


class InvalidSignature(ValueError):
    """The request was not signed with a known secret, or is too old (or too new)."""


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
