"""What may be shown of a value: secrets never leave the process (pure: no I/O).

One home for the rules every output channel follows (configuration errors, logs, dead
letters, status): keys that name secrets show ``<redacted>``; objects are never dumped (a
route's options hold secrets); URLs lose their user:password and their query values.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["REDACTED", "is_secret_key", "redact_text", "redact_url", "shown_value"]

REDACTED = "<redacted>"
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|authorization|credential|api[_-]?key|headers|"
    r"access[_-]?key|session)",
    re.IGNORECASE,
)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def is_secret_key(key: str) -> bool:
    """Whether a dotted configuration key (``routes.0.options.secret``) names a secret."""
    return bool(_SECRET_KEY.search(key))


def redact_url(url: str) -> str:
    """``url`` without user:password and with every query value replaced."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "<url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if _port(parts) is not None else "")
    query = "&".join(f"{name}={REDACTED}" for name, _ in parse_qsl(parts.query, True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _port(parts: Any) -> int | None:
    try:
        return parts.port  # type: ignore[no-any-return]
    except ValueError:
        return None


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted."""

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        kept = url.rstrip(".,:;)]}")
        return redact_url(kept) + url[len(kept) :]

    return _URL.sub(one, text)


def shown_value(key: str, value: object) -> str:
    """How a configuration value appears in an error message."""
    if is_secret_key(key):
        return REDACTED
    if isinstance(value, dict):
        return "<an object, not shown>"
    if isinstance(value, list | tuple):
        if all(isinstance(v, str | int | float | bool) or v is None for v in value):
            return "[" + ", ".join(_scalar(v) for v in value) + "]"
        return "<a list, not shown>"
    return _scalar(value)


def _scalar(value: object) -> str:
    return repr(redact_text(value)) if isinstance(value, str) else repr(value)
