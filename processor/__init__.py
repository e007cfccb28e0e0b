"""dynamodb-stream-processor: read a DynamoDB Stream, fan every change out to consumers.

The names below are the public API; consumers (built-in and users') import only these.
Each is imported on first use (PEP 562): `import processor`, or a submodule such as
`processor.aws_lambda`, does not import the whole engine (a Lambda function's cold start)."""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and readers see; at run time, __getattr__ below
    from processor.aws import THROTTLING_CODES, translate_client_error
    from processor.core.consumer import (
        BatchResult,
        Consumer,
        ConsumerContext,
        ConsumerFactory,
        RouteStats,
        StreamInfo,
        declare_aws_connections,
        load_callable,
    )
    from processor.core.dead_letters import DeadLetter, DeadLetterSink
    from processor.core.dispatch import Dispatcher
    from processor.core.handlers import RecordHandler, record_handler
    from processor.core.records import EventName, StreamRecord
    from processor.core.retry import RetryPolicy
    from processor.core.routing import FilterPattern, Route
    from processor.core.values import decode_image, decode_value, plain_image, to_client_image
    from processor.core.waits import WaitRetryAfter, parse_retry_after
    from processor.dynamodb_table import ConditionFailed, DynamoDBTable, WriteAnswer
    from processor.errors import (
        CircuitOpen,
        ConfigError,
        DestinationNotAllowed,
        InvalidSignature,
        IteratorExpiredError,
        LeaseLostError,
        ProcessorError,
        RecordError,
        ShutdownRequested,
        Signal,
        StreamError,
        StreamNotFoundError,
        TransientError,
        TrimmedDataError,
    )
    from processor.redaction import redact_text, redact_url
    from processor.sinks.jsonl import JsonlDeadLetterSink

__all__ = [
    "THROTTLING_CODES",
    "BatchResult",
    "CircuitOpen",
    "ConditionFailed",
    "ConfigError",
    "Consumer",
    "ConsumerContext",
    "ConsumerFactory",
    "DeadLetter",
    "DeadLetterSink",
    "DestinationNotAllowed",
    "Dispatcher",
    "DynamoDBTable",
    "EventName",
    "FilterPattern",
    "InvalidSignature",
    "IteratorExpiredError",
    "JsonlDeadLetterSink",
    "LeaseLostError",
    "ProcessorError",
    "RecordError",
    "RecordHandler",
    "RetryPolicy",
    "Route",
    "RouteStats",
    "ShutdownRequested",
    "Signal",
    "StreamError",
    "StreamInfo",
    "StreamNotFoundError",
    "StreamRecord",
    "TransientError",
    "TrimmedDataError",
    "WaitRetryAfter",
    "WriteAnswer",
    "declare_aws_connections",
    "decode_image",
    "decode_value",
    "load_callable",
    "parse_retry_after",
    "plain_image",
    "record_handler",
    "redact_text",
    "redact_url",
    "to_client_image",
    "translate_client_error",
]

#: where each public name is defined
_HOMES: dict[str, str] = {
    "THROTTLING_CODES": "processor.aws",
    "BatchResult": "processor.core.consumer",
    "CircuitOpen": "processor.errors",
    "ConditionFailed": "processor.dynamodb_table",
    "ConfigError": "processor.errors",
    "Consumer": "processor.core.consumer",
    "ConsumerContext": "processor.core.consumer",
    "ConsumerFactory": "processor.core.consumer",
    "DeadLetter": "processor.core.dead_letters",
    "DeadLetterSink": "processor.core.dead_letters",
    "DestinationNotAllowed": "processor.errors",
    "Dispatcher": "processor.core.dispatch",
    "DynamoDBTable": "processor.dynamodb_table",
    "EventName": "processor.core.records",
    "FilterPattern": "processor.core.routing",
    "InvalidSignature": "processor.errors",
    "IteratorExpiredError": "processor.errors",
    "JsonlDeadLetterSink": "processor.sinks.jsonl",
    "LeaseLostError": "processor.errors",
    "ProcessorError": "processor.errors",
    "RecordError": "processor.errors",
    "RecordHandler": "processor.core.handlers",
    "RetryPolicy": "processor.core.retry",
    "Route": "processor.core.routing",
    "RouteStats": "processor.core.consumer",
    "ShutdownRequested": "processor.errors",
    "Signal": "processor.errors",
    "StreamError": "processor.errors",
    "StreamInfo": "processor.core.consumer",
    "StreamNotFoundError": "processor.errors",
    "StreamRecord": "processor.core.records",
    "TransientError": "processor.errors",
    "TrimmedDataError": "processor.errors",
    "WaitRetryAfter": "processor.core.waits",
    "WriteAnswer": "processor.dynamodb_table",
    "declare_aws_connections": "processor.core.consumer",
    "decode_image": "processor.core.values",
    "decode_value": "processor.core.values",
    "load_callable": "processor.core.consumer",
    "parse_retry_after": "processor.core.waits",
    "plain_image": "processor.core.values",
    "record_handler": "processor.core.handlers",
    "redact_text": "processor.redaction",
    "redact_url": "processor.redaction",
    "to_client_image": "processor.core.values",
    "translate_client_error": "processor.aws",
}


#: names that moved to a module of their own in 0.2.0: still found here, with a warning
_MOVED: dict[str, str] = dict.fromkeys(
    (
        "CircuitBreaker",
        "EgressPolicy",
        "FairScheduler",
        "TokenBuckets",
        "check_url_template",
        "host_is_templated",
        "new_secret",
        "pinned_request",
        "secret_key",
        "signature_headers",
        "standard_headers",
        "verify",
    ),
    "processor.webhooks",
)


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (then an ordinary attribute)."""
    if name == "__version__":
        value: Any = _version()
    elif name in _MOVED:
        moved_to = _MOVED[name]
        warnings.warn(
            f"processor.{name} moved to {moved_to}.{name} in 0.2.0; import it from there "
            "(this name is removed in 0.3.0)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(moved_to), name)
    else:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'processor' has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})


def _version() -> str:
    """The version lives in pyproject.toml alone; installed metadata carries it here."""
    from importlib import metadata  # noqa: PLC0415 - only when asked for

    try:
        return metadata.version("dynamodb-stream-processor")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
