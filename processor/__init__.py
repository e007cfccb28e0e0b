"""dynamodb-stream-processor: read a DynamoDB Stream, fan every change out to consumers.

The names below are the public API; consumers (built-in and users') import only these.
"""

from processor.aws import THROTTLING_CODES, translate_client_error
from processor.batching import Dispatcher, RetryPolicy
from processor.consumer import (
    BatchResult,
    Consumer,
    ConsumerContext,
    ConsumerFactory,
    RouteStats,
    StreamInfo,
    load_callable,
)
from processor.dead_letter import DeadLetter, DeadLetterSink, JsonlDeadLetterSink
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
from processor.records import (
    EventName,
    StreamRecord,
    decode_image,
    decode_value,
    plain_image,
    to_client_image,
)
from processor.routing import FilterPattern, Route

__all__ = [
    "THROTTLING_CODES",
    "BatchResult",
    "ConfigError",
    "Consumer",
    "ConsumerContext",
    "ConsumerFactory",
    "DeadLetter",
    "DeadLetterSink",
    "Dispatcher",
    "EventName",
    "FilterPattern",
    "IteratorExpiredError",
    "JsonlDeadLetterSink",
    "LeaseLostError",
    "ProcessorError",
    "RecordError",
    "RetryPolicy",
    "Route",
    "RouteStats",
    "ShutdownRequested",
    "StreamError",
    "StreamInfo",
    "StreamNotFoundError",
    "StreamRecord",
    "TransientError",
    "TrimmedDataError",
    "decode_image",
    "decode_value",
    "load_callable",
    "plain_image",
    "to_client_image",
    "translate_client_error",
]

__version__ = "0.1.0"
