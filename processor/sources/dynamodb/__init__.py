"""The DynamoDB Streams source: the adapter and the raw GetRecords decoding."""

from processor.sources.dynamodb.adapter import (
    RETENTION_S,
    DescribePacer,
    StreamsAdapter,
    resolve_stream,
)

__all__ = ["RETENTION_S", "DescribePacer", "StreamsAdapter", "resolve_stream"]
