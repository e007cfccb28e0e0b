"""Decode + route + no-op consumer on recorded pages: ours vs boto3's parser + TypeDeserializer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.parsers import create_parser

from processor.core.records import StreamRecord
from processor.core.routing import Route, compile_filters
from processor.sources.dynamodb.adapter import capture_get_records_body
from processor.sources.dynamodb.wire import decode_page

_client = boto3.client(
    "dynamodbstreams", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
)
_OUTPUT = _client.meta.service_model.operation_model("GetRecords").output_shape
assert _OUTPUT is not None
_SHAPE = _OUTPUT
_PARSER = create_parser("json")
_deserialize = TypeDeserializer().deserialize
_FILTER = compile_filters(['{"eventName": ["INSERT", "MODIFY", "REMOVE"]}'])


def _response(body: bytes) -> dict[str, Any]:
    return {"body": body, "headers": {}, "status_code": 200}


def boto3_baseline(*, images: bool) -> Callable[[bytes], int]:
    """What a plain boto3 loop does: botocore parses the page, TypeDeserializer decodes."""

    def run(body: bytes) -> int:
        parsed = _PARSER.parse(_response(body), _SHAPE)
        n = 0
        for record in parsed["Records"]:
            if record["eventName"] not in ("INSERT", "MODIFY", "REMOVE"):
                continue
            ddb = record["dynamodb"]
            keys = {k: _deserialize(v) for k, v in ddb["Keys"].items()}
            if images:
                new = {k: _deserialize(v) for k, v in ddb.get("NewImage", {}).items()}
                old = {k: _deserialize(v) for k, v in ddb.get("OldImage", {}).items()}
                n += len(new) + len(old)
            n += len(keys)
        return n

    return run


def _counting(seen: list[int], *, images: bool) -> Callable[[list[StreamRecord]], None]:
    """The no-op consumer of the decode rows: it reads the keys (and the images)."""

    def consumer(records: list[StreamRecord]) -> None:
        for record in records:
            seen[0] += len(record.keys)
            if images:
                seen[0] += len(record.new_image or {}) + len(record.old_image or {})

    return consumer


def ours(*, images: bool) -> Callable[[bytes], int]:
    """Our reader's path: the before-parse hook, StreamRecord views, a filtered route."""
    seen = [0]
    consumer = _counting(seen, images=images)
    route = Route("r", consumer, _FILTER)

    def run(body: bytes) -> int:
        response: dict[str, Any] = _response(body)
        custom: dict[str, Any] = {}
        capture_get_records_body(response, custom)
        _PARSER.parse(response, _SHAPE)  # botocore still parses what is left: {}
        records, _, _ = decode_page(custom["DspBody"], "s")
        seen[0] = 0
        consumer(route.select(records))
        return seen[0]

    return run


def powertools_baseline(*, images: bool) -> Callable[[bytes], int]:
    """A Lambda handler with Powertools' data classes (the event arrives JSON-decoded)."""
    import json  # noqa: PLC0415 - the Lambda runtime's decode, part of this baseline

    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (  # noqa: PLC0415
        DynamoDBStreamEvent,
    )

    def run(body: bytes) -> int:
        return _powertools_count(DynamoDBStreamEvent(json.loads(body)), images=images)

    return run


def _powertools_count(event: Any, *, images: bool) -> int:
    """What the Powertools handler of both baselines does with a DynamoDBStreamEvent."""
    n = 0
    for record in event.records:
        if record.raw_event["eventName"] not in ("INSERT", "MODIFY", "REMOVE"):
            continue
        ddb = record.dynamodb
        assert ddb is not None
        n += len(ddb.keys or {})
        if images:
            n += len(ddb.new_image or {}) + len(ddb.old_image or {})
    return n


def dispatched(*, tenancy: bool) -> Callable[[bytes], int]:
    """Our path through the Dispatcher (as the worker runs it), with or without [tenancy]:
    the cost of giving every record its tenant and counting records per tenant."""
    import threading  # noqa: PLC0415

    from processor.core.consumer import RouteStats  # noqa: PLC0415
    from processor.core.dispatch import Dispatcher  # noqa: PLC0415
    from processor.core.retry import RetryPolicy  # noqa: PLC0415
    from processor.core.tenancy import Tenancy, TenantResolver  # noqa: PLC0415

    seen = [0]

    def consumer(records: list[StreamRecord]) -> None:
        for record in records:
            seen[0] += len(record.keys)

    class _NoDeadLetters:
        def send(self, entries: object) -> None:
            raise AssertionError("nothing is dead-lettered here")

    dispatcher = Dispatcher(
        [Route("r", consumer, _FILTER)],
        _NoDeadLetters(),
        RetryPolicy(),
        stats={"r": RouteStats()},
        stop=threading.Event(),
        tenancy=Tenancy(TenantResolver.from_settings("pk", r"^TENANT#(?P<tenant>[^#]+)"))
        if tenancy
        else None,
    )

    def run(body: bytes) -> int:
        response: dict[str, Any] = _response(body)
        custom: dict[str, Any] = {}
        capture_get_records_body(response, custom)
        _PARSER.parse(response, _SHAPE)
        records, _, _ = decode_page(custom["DspBody"], "s")
        seen[0] = 0
        dispatcher.dispatch(records)
        return seen[0]

    return run


def _kinesis_body(body: bytes) -> bytes:
    """The same changes as a Kinesis GetRecords page of a table's KDS stream (µs times)."""
    import base64  # noqa: PLC0415
    import json  # noqa: PLC0415

    records = []
    for record in json.loads(body)["Records"]:
        ddb = dict(record["dynamodb"])
        sequence = ddb.pop("SequenceNumber")
        ddb.pop("StreamViewType", None)
        ddb["ApproximateCreationDateTime"] = int(float(ddb["ApproximateCreationDateTime"]) * 1e6)
        ddb["ApproximateCreationDateTimePrecision"] = "MICROSECOND"
        payload = {
            "awsRegion": record.get("awsRegion", "us-east-1"),
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "userIdentity": record.get("userIdentity"),
            "recordFormat": "application/json",
            "tableName": "bench",
            "dynamodb": ddb,
            "eventSource": "aws:dynamodb",
        }
        data = json.dumps(payload, separators=(",", ":")).encode()
        records.append(
            {
                "SequenceNumber": sequence,
                "ApproximateArrivalTimestamp": 1721011165.891,
                "Data": base64.b64encode(data).decode(),
                "PartitionKey": "68406A366BD60300C59F519142163A14",
            }
        )
    answer = {"Records": records, "NextShardIterator": "x", "MillisBehindLatest": 0}
    return json.dumps(answer).encode()


def kinesis_ours(*, images: bool, bodies: list[bytes]) -> Callable[[bytes], int]:
    """The Kinesis source's path on the same changes: the before-parse hook keeps the page
    from botocore's parser, each record's base64 Data and KDS JSON decode to a StreamRecord,
    the route filters."""
    from processor.sources.kinesis.wire import decode_page as decode_kinesis  # noqa: PLC0415

    kinesis = boto3.client(
        "kinesis", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    shape = kinesis.meta.service_model.operation_model("GetRecords").output_shape
    pages = {body: _kinesis_body(body) for body in bodies}
    seen = [0]
    consumer = _counting(seen, images=images)
    route = Route("r", consumer, _FILTER)

    def run(body: bytes) -> int:
        response: dict[str, Any] = _response(pages[body])
        custom: dict[str, Any] = {}
        capture_get_records_body(response, custom)
        _PARSER.parse(response, shape)  # botocore still parses what is left: {}
        records = decode_kinesis(custom["DspBody"], "s").records
        seen[0] = 0
        consumer(route.select(records))
        return seen[0]

    return run


def _events(bodies: list[bytes]) -> dict[bytes, dict[str, Any]]:
    """Each page as Lambda hands it to a handler: already JSON-decoded (outside the timing)."""
    import json  # noqa: PLC0415

    return {body: json.loads(body) for body in bodies}


def lambda_ours(*, images: bool, bodies: list[bytes]) -> Callable[[bytes], int]:
    """Our Lambda handler's path on a decoded event: a record view per entry, the route."""
    from processor.aws_lambda import _record  # noqa: PLC0415

    events = _events(bodies)
    seen = [0]
    consumer = _counting(seen, images=images)
    route = Route("r", consumer, _FILTER)

    def run(body: bytes) -> int:
        records = [_record(raw) for raw in events[body]["Records"]]
        seen[0] = 0
        consumer(route.select(records))
        return seen[0]

    return run


def lambda_powertools(*, images: bool, bodies: list[bytes]) -> Callable[[bytes], int]:
    """A Powertools handler on the same decoded event (no json.loads charged to it)."""
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (  # noqa: PLC0415
        DynamoDBStreamEvent,
    )

    events = _events(bodies)

    def run(body: bytes) -> int:
        return _powertools_count(DynamoDBStreamEvent(events[body]), images=images)

    return run
