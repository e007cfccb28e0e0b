"""Kinesis Data Streams for DynamoDB records become the same StreamRecord a DynamoDB stream
gives: filters, images and keys agree; the Kinesis sequence number is the position."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from processor.core.routing import compile_filters
from processor.errors import RecordError
from processor.sources.kinesis import KDS_SHAPE_FIELDS, from_kinesis

EVENTS = Path(__file__).resolve().parents[2] / "events"


def payload(name: str) -> bytes:
    return (EVENTS / f"{name}.json").read_bytes()


def test_the_fixtures_have_the_documented_shape() -> None:
    """The fixtures carry exactly the KDS top-level fields, and no stream-only ones."""
    for name in ("kds_insert_microsecond", "kds_ttl_remove_millisecond"):
        doc = json.loads(payload(name))
        assert set(doc) == KDS_SHAPE_FIELDS
        assert not {"SequenceNumber", "StreamViewType"} & set(doc["dynamodb"])


def test_microsecond_precision_is_kept_and_the_position_is_the_kinesis_sequence() -> None:
    """µs timestamps (ApproximateCreationDateTimePrecision = MICROSECOND) keep their µs;
    the sequence number is the Kinesis record's; the table comes from tableName."""
    seq = "49654123456789012345678901234567890123456789012345678901"
    record = from_kinesis(payload("kds_insert_microsecond"), seq, shard_id="shardId-000000000001")
    assert record.sequence_number == seq
    assert record.shard_id == "shardId-000000000001"
    assert record.approximate_creation_time == datetime(2024, 7, 15, 2, 39, 25, 891550, UTC)
    assert record.table_name == "flight"
    assert record.event_name.value == "INSERT"


def botocore_form(value: Any) -> Any:
    """What boto3's client hands TypeDeserializer: binary base64-decoded."""
    if isinstance(value, dict):
        if "B" in value:
            return {"B": base64.b64decode(value["B"])}
        return {k: botocore_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [botocore_form(v) for v in value]
    return value


def test_images_decode_as_boto3s_type_deserializer() -> None:
    """Every attribute type (N, SS, B, L of M, BOOL, NULL) decodes exactly as boto3 does."""
    doc = json.loads(payload("kds_insert_microsecond"))
    record = from_kinesis(payload("kds_insert_microsecond"), "7")
    image = doc["dynamodb"]["NewImage"]
    expected = {k: TypeDeserializer().deserialize(botocore_form(v)) for k, v in image.items()}
    assert record.new_image == expected
    assert record.new_image is not None
    assert record.new_image["price"] == Decimal("99.90")


def test_millisecond_timestamps_without_a_precision_field_and_ttl_deletes() -> None:
    """No precision field means milliseconds; a TTL delete is still recognised."""
    record = from_kinesis(payload("kds_ttl_remove_millisecond"), "8")
    assert record.approximate_creation_time == datetime(2021, 3, 1, 12, 57, 12, 364000, UTC)
    assert record.is_ttl_delete
    assert record.new_image is None
    assert record.old_image == {"id": "s-1", "expires": Decimal("1614603400")}


def test_a_filter_sees_the_same_record_from_either_stream() -> None:
    """A Lambda-style pattern on dynamodb.NewImage and eventName matches the KDS record as it
    would the stream record of the same change."""
    # (numeric matching does not apply to DynamoDB's "N" strings, in Lambda as here)
    source = '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"seats": {"N": ["180"]}}}}'
    (pattern,) = compile_filters([source])
    record = from_kinesis(payload("kds_insert_microsecond"), "9")
    assert pattern.matches(record.raw)
    other = from_kinesis(payload("kds_ttl_remove_millisecond"), "10")
    assert not pattern.matches(other.raw)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "is not JSON"),
        (b'{"eventName": "INSERT"}', "no 'dynamodb' object"),
        (
            b'{"eventName": "PUT", "eventID": "x", "dynamodb": {"Keys": {"k": {"S": "1"}}}}',
            "eventName",
        ),
    ],
)
def test_what_is_not_a_dynamodb_change_is_a_record_error(data: bytes, reason: Any) -> None:
    """Bad input is a RecordError naming why (the record is dead-lettered whole)."""
    with pytest.raises(RecordError, match=reason):
        from_kinesis(data, "11")


def test_a_webhook_body_is_the_same_from_either_stream_but_for_the_position() -> None:
    """The same change read from a DynamoDB stream (its record built as DynamoDB Streams
    shapes it: seconds, a SequenceNumber, a StreamViewType) and from Kinesis: the webhook
    body differs only in ``sequence_number`` and, within the same second, the timestamp's
    precision."""
    from consumers.webhook.body import encode_body  # noqa: PLC0415
    from processor.core.records import StreamRecord  # noqa: PLC0415

    doc = json.loads(payload("kds_insert_microsecond"))
    ddb = doc["dynamodb"]
    seconds = ddb["ApproximateCreationDateTime"] // 1_000_000
    streams_raw = {
        "eventID": doc["eventID"],
        "eventName": doc["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": doc["awsRegion"],
        "dynamodb": {
            "ApproximateCreationDateTime": seconds,
            "Keys": ddb["Keys"],
            "NewImage": ddb["NewImage"],
            "SequenceNumber": "111",
            "SizeBytes": ddb["SizeBytes"],
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    from_streams = json.loads(encode_body(StreamRecord(streams_raw), table_name=doc["tableName"]))
    from_kds = json.loads(
        encode_body(from_kinesis(payload("kds_insert_microsecond"), "9"), table_name="x")
    )
    assert (from_streams.pop("sequence_number"), from_kds.pop("sequence_number")) == ("111", "9")
    streams_time = from_streams.pop("approximate_creation_time")
    kds_time = from_kds.pop("approximate_creation_time")
    assert kds_time.startswith(streams_time.removesuffix("Z"))  # the same second, finer
    assert from_streams == from_kds
