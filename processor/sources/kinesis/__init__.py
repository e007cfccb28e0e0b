"""Kinesis Data Streams for DynamoDB: a table's changes as Kinesis records (issue 18)."""

from processor.sources.kinesis.adapter import KinesisSource, resolve_kinesis_stream
from processor.sources.kinesis.wire import KDS_SHAPE_FIELDS, from_kinesis

__all__ = ["KDS_SHAPE_FIELDS", "KinesisSource", "from_kinesis", "resolve_kinesis_stream"]
