"""The whole error tree of the processor.

Branches are chosen by what the caller must do, never by where an error came from::

    ProcessorError
    ├── ConfigError            stop at start; exit status 2; names the key, the value, the fix
    ├── RecordError            this record can never succeed: dead-letter it, never retry
    ├── TransientError         retry with backoff: throttling, 5xx/429, timeouts, Redis down
    ├── StreamError            the stream position is unusable; the reader must act
    │   ├── IteratorExpiredError    re-acquire after the last handled sequence number
    │   ├── TrimmedDataError        the position is older than the 24 h retention
    │   └── StreamNotFoundError     the stream or shard is gone
    ├── LeaseLostError         another owner took the shard: stop reading it, checkpoint nothing
    └── ShutdownRequested      a stop was asked for while waiting: abandon, do not checkpoint

Adapters translate vendor errors exactly once (``raise ... from exc``); the context
(``shard_id``, ``sequence_number``, ``consumer``) lives in attributes, not only in text.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "IteratorExpiredError",
    "LeaseLostError",
    "ProcessorError",
    "RecordError",
    "ShutdownRequested",
    "StreamError",
    "StreamNotFoundError",
    "TransientError",
    "TrimmedDataError",
]


class ProcessorError(Exception):
    """Base of every error the processor raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        shard_id: str | None = None,
        sequence_number: str | None = None,
        consumer: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.shard_id = shard_id
        self.sequence_number = sequence_number
        self.consumer = consumer


class ConfigError(ProcessorError):
    """Configuration is invalid; the process must not start.

    ``key`` is the dotted configuration key (``routes.0.options.table``), ``value`` what was
    given, and the message says what would be valid.
    """

    def __init__(self, key: str, value: object, message: str) -> None:
        shown = "<missing>" if value is _MISSING else repr(value)
        super().__init__(f"{key} = {shown}: {message}")
        self.key = key
        self.value = value
        self.reason = message


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: object = _Missing()
#: The value of a ConfigError for a key that was not given at all.
MISSING = _MISSING


class RecordError(ProcessorError):
    """The record itself is the problem (malformed, too large, rejected with a 4xx)."""


class TransientError(ProcessorError):
    """Worth retrying later: throttling, server errors, timeouts, connection failures.

    ``retry_after`` is the delay the server asked for, in seconds, when it named one.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        shard_id: str | None = None,
        sequence_number: str | None = None,
        consumer: str | None = None,
    ) -> None:
        super().__init__(
            message, shard_id=shard_id, sequence_number=sequence_number, consumer=consumer
        )
        self.retry_after = retry_after


class StreamError(ProcessorError):
    """The stream position cannot be used as it is."""


class IteratorExpiredError(StreamError):
    """The shard iterator is older than 15 minutes."""


class TrimmedDataError(StreamError):
    """The requested position is beyond the stream's 24 h retention."""


class StreamNotFoundError(StreamError):
    """The stream, table or shard does not exist (or no longer does)."""


class LeaseLostError(ProcessorError):
    """This process no longer owns the shard's lease."""


class ShutdownRequested(ProcessorError):
    """A stop was requested while work was waiting; the work is abandoned, not failed."""
