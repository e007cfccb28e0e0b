"""The whole error tree of the processor: every public error class of ``processor`` is defined
here (consumers, which use only the public API, define theirs beside them); a test compares
this drawing with the classes.

Branches are chosen by what the caller must do, never by where an error came from::

    ProcessorError
    ├── ConfigError            stop at start; exit status 2; names the key, the value, the fix
    ├── PatternError           a filter pattern is malformed (a ValueError too); names the path
    ├── RecordError            this record can never succeed: dead-letter it, never retry
    │   ├── MissingTenant      (consumers.webhook) a URL needs {tenant}; the record has none
    │   └── DestinationNotAllowed  (webhooks.egress) the policy refuses a webhook destination
    ├── TransientError         retry with backoff: throttling, 5xx/429, timeouts, Redis down
    │   └── Held               (consumers.webhook) its receiver is down: hold it, spend no retry
    ├── StreamError            the stream position is unusable; the reader must act
    │   ├── IteratorExpiredError    re-acquire after the last handled sequence number
    │   ├── TrimmedDataError        the position is older than the 24 h retention
    │   └── StreamNotFoundError     the stream or shard is gone
    ├── LeaseLostError         another owner took the shard: stop reading it, checkpoint nothing
    ├── ShutdownRequested      a stop was asked for while waiting: abandon, do not checkpoint
    ├── CircuitOpen            (webhooks.flow) a destination's breaker is open: wait for its probe
    ├── ShardEndNotCheckpointed (runtime.reader) a finished shard's end was not checkpointed
    ├── ChildDied, ChildTimedOut (kclpy_daemon.child) a KCL MultiLang child failed its lease
    ├── ProtocolError          (kclpy_daemon.shard) a MultiLang child broke the protocol
    ├── ConditionFailed        (dynamodb_table) a conditional write's condition did not hold
    └── InvalidSignature       (webhooks.signatures) a webhook request's signature does not verify

Adapters translate vendor errors exactly once (``raise ... from exc``); the context
(``shard_id``, ``sequence_number``, ``consumer``) lives in attributes, not only in text.
"""

from __future__ import annotations

import json

from processor.redaction import redact_text, shown_value

__all__ = [
    "ChildDied",
    "ChildTimedOut",
    "CircuitOpen",
    "ConditionFailed",
    "ConfigError",
    "DestinationNotAllowed",
    "InvalidSignature",
    "IteratorExpiredError",
    "LeaseLostError",
    "PatternError",
    "ProcessorError",
    "ProtocolError",
    "RecordError",
    "ShardEndNotCheckpointed",
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
        fix: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.shard_id = shard_id
        self.sequence_number = sequence_number
        self.consumer = consumer
        #: for a person: the likely fix (set by the adapter that knows the cause)
        self.fix = fix


class ConfigError(ProcessorError):
    """Configuration is invalid; the process must not start.

    ``key`` is the dotted configuration key (``routes.0.options.table``), ``value`` what was
    given, and the message says what would be valid.
    """

    def __init__(self, key: str, value: object, message: str) -> None:
        shown = "<missing>" if value is _MISSING else shown_value(key, value)
        super().__init__(f"{key} = {shown}: {redact_text(message)}")
        self.key = key
        self.value = value
        self.reason = message


class PatternError(ProcessorError, ValueError):
    """A malformed filter pattern: ``path`` locates it inside the pattern, ``fragment`` is
    the offending part (quoted in the message), and the message says what would be valid.
    Settings validation turns it into a configuration error naming the route."""

    def __init__(
        self, message: str, fragment: object = None, *, path: str = "", source_text: bool = False
    ) -> None:
        self.path = path
        self.fragment = fragment
        where = f"at {path}: " if path else ""
        shown = "" if fragment is None else f" (got {_show(fragment, source_text)})"
        super().__init__(f"{where}{message}{shown}")


def _show(fragment: object, source_text: bool = False) -> str:
    text = str(fragment) if source_text else _json(fragment)
    return text if len(text) <= 200 else text[:197] + "..."


def _json(value: object) -> str:
    """JSON text of a parsed pattern fragment; numbers (kept as ``str`` subclasses) bare."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    if isinstance(value, str) and type(value) is not str:
        return str.__str__(value)
    return json.dumps(value, default=str)


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

    ``retry_after`` is the delay the server asked for, in seconds, when it named one;
    ``throttled`` says the server asked us to slow down (not a fault: pace, do not just retry).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        throttled: bool = False,
        shard_id: str | None = None,
        sequence_number: str | None = None,
        consumer: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(
            message,
            shard_id=shard_id,
            sequence_number=sequence_number,
            consumer=consumer,
            fix=fix,
        )
        self.retry_after = retry_after
        self.throttled = throttled


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


class Signal(Exception):
    """Not an error: control flow between the engine's modules (a route's retries spent, a
    partial failure to retry, a record too old to try, a record a consumer refused). A signal
    never leaves the engine: it is turned into a dead letter or a retry where it is caught."""


class ShutdownRequested(ProcessorError):
    """A stop was requested while work was waiting; the work is abandoned, not failed."""


# -- raised in one module, caught or shown in others: here too, so the tree is whole ------


class ConditionFailed(ProcessorError):
    """(processor.dynamodb_table) A conditional write's condition did not hold (nothing was
    written)."""


class ChildDied(ProcessorError):
    """(kclpy_daemon.child) The child exited, or closed its stdout, while the daemon waited."""


class ChildTimedOut(ProcessorError):
    """(kclpy_daemon.child) The child did not answer within ``timeoutInSeconds``."""


class ProtocolError(ProcessorError):
    """(kclpy_daemon.shard) The child answered what the protocol does not allow at that point."""


class ShardEndNotCheckpointed(ProcessorError):
    """(runtime.reader) The processor did not checkpoint the end of a finished shard: its
    children wait."""


class InvalidSignature(ProcessorError, ValueError):
    """(webhooks.signatures) The request was not signed with a known secret, or is too old (or
    too new)."""


class CircuitOpen(ProcessorError):
    """(webhooks.flow) Calls to ``host`` are suspended; the next probe is allowed in
    ``retry_in_s``."""

    def __init__(
        self, host: str, retry_in_s: float, failures: int, *, probing: bool = False
    ) -> None:
        super().__init__(
            f"circuit open for {host} after {failures} consecutive failures; "
            + ("a probe is in flight" if probing else f"next probe in {retry_in_s:.1f} s")
        )
        self.host = host
        self.retry_in_s = retry_in_s
        #: half-open with the probe out: the answer is moments away
        self.probing = probing


class DestinationNotAllowed(RecordError):
    """(webhooks.egress) A webhook destination the policy refuses; never connected to: dead-letter
    it."""

    reason_code = "destination_not_allowed"

    def __init__(self, host: str, address: str | None, why: str) -> None:
        at = f" ({address})" if address else ""
        super().__init__(f"destination_not_allowed: {host}{at}: {why}")
        self.host = host
        self.address = address
        self.why = why
