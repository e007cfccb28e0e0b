"""dynamodb-stream-processor: read a DynamoDB Stream, fan every change out to consumers.

The names below are the public API; consumers (built-in and users') import only these.
"""

from importlib import metadata as _metadata

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
from processor.core.dispatch import Dispatcher
from processor.core.egress import (
    DestinationNotAllowed,
    EgressPolicy,
    check_url_template,
    host_is_templated,
    pinned_request,
)
from processor.core.flow import CircuitBreaker, CircuitOpen, FairScheduler, TokenBuckets
from processor.core.handlers import RecordHandler, record_handler
from processor.core.records import EventName, StreamRecord
from processor.core.redaction import redact_text, redact_url
from processor.core.retry import RetryPolicy
from processor.core.routing import FilterPattern, Route
from processor.core.signatures import (
    InvalidSignature,
    new_secret,
    secret_key,
    signature_headers,
    standard_headers,
    verify,
)
from processor.core.values import decode_image, decode_value, plain_image, to_client_image
from processor.core.waits import WaitRetryAfter, parse_retry_after
from processor.errors import (
    ConfigError,
    IteratorExpiredError,
    LeaseLostError,
    ProcessorError,
    RecordError,
    ShutdownRequested,
    StreamError,
    StreamNotFoundError,
    TransientError,
    TrimmedDataError,
)
from processor.sinks.dead_letter import DeadLetter, DeadLetterSink, JsonlDeadLetterSink
from processor.tables import ConditionFailed, DynamoDBTable, WriteAnswer

__all__ = [
    "THROTTLING_CODES",
    "BatchResult",
    "CircuitBreaker",
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
    "EgressPolicy",
    "EventName",
    "FairScheduler",
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
    "StreamError",
    "StreamInfo",
    "StreamNotFoundError",
    "StreamRecord",
    "TokenBuckets",
    "TransientError",
    "TrimmedDataError",
    "WaitRetryAfter",
    "WriteAnswer",
    "check_url_template",
    "declare_aws_connections",
    "decode_image",
    "decode_value",
    "host_is_templated",
    "load_callable",
    "new_secret",
    "parse_retry_after",
    "pinned_request",
    "plain_image",
    "record_handler",
    "redact_text",
    "redact_url",
    "secret_key",
    "signature_headers",
    "standard_headers",
    "to_client_image",
    "translate_client_error",
    "verify",
]

try:  # the version lives in pyproject.toml alone; installed metadata carries it here
    __version__ = _metadata.version("dynamodb-stream-processor")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
