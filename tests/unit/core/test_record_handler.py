"""Per-record handlers (issue 33, item 3): a function of one record as a consumer, with the
engine's retries, bisection, per-key order and dead letters, and Lambda's partial batch
response compared with Powertools' BatchProcessor on Powertools' own DynamoDB event."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from processor import aws_lambda
from processor.core.consumer import RouteStats
from processor.core.dead_letters import DeadLetter
from processor.core.dispatch import Dispatcher
from processor.core.handlers import RecordHandler, record_handler
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.errors import ConfigError, RecordError
from processor.settings import load_settings
from processor.testing import make_record

EVENTS = Path(__file__).resolve().parents[2] / "events"


def rec(key: str, seq: int, **image: str) -> StreamRecord:
    new = {"pk": {"S": key}, **{k: {"S": v} for k, v in image.items()}}
    return make_record(
        {"pk": {"S": key}}, new_image=new, sequence_number=str(seq), event_id=f"e{seq}"
    )


class Sink:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def send(self, entries: Sequence[DeadLetter]) -> None:
        self.letters.extend(entries)


def test_a_failure_stops_its_key_and_a_rejection_does_not() -> None:
    calls: list[int] = []

    def handle(record: StreamRecord) -> None:
        calls.append(int(record.sequence_number))
        if record.new_image and record.new_image.get("x") == "boom":
            raise ValueError("receiver down")
        if record.new_image and record.new_image.get("x") == "bad":
            raise RecordError("no such customer")

    records = [
        rec("a", 1), rec("a", 2, x="boom"), rec("b", 3, x="bad"), rec("a", 4),
        rec("b", 5), rec("c", 6),
    ]  # fmt: skip
    result = RecordHandler(handle)(records)
    assert calls == [1, 2, 3, 5, 6]  # a's 4 waits for a's 2
    assert result is not None
    assert result.failed_event_ids == {"e2"}
    assert result.rejected == {"e3": "no such customer"}
    assert result.reasons["e2"] == "ValueError: receiver down"
    assert RecordHandler(lambda r: None)(records) is None


def test_through_the_engine_retries_keep_each_keys_order_and_poison_is_dead_lettered() -> None:
    attempts: dict[str, int] = {}
    handled: list[tuple[str, int]] = []

    @record_handler
    def handle(record: StreamRecord) -> None:
        attempts[record.event_id] = attempts.get(record.event_id, 0) + 1
        image = record.new_image or {}
        if image.get("x") == "flaky" and attempts[record.event_id] < 3:
            raise ConnectionError("try again")
        if image.get("x") == "poison":
            raise ValueError("always")
        handled.append((record.keys["pk"], int(record.sequence_number)))

    sink = Sink()
    dispatcher = Dispatcher(
        [Route("r", handle)],
        sink,
        RetryPolicy(max_retries=3, base_delay_s=0.001, max_delay_s=0.002),
        stats={"r": RouteStats()},
        stop=threading.Event(),
    )
    records = [
        rec("a", 1), rec("a", 2, x="flaky"), rec("b", 3), rec("a", 4), rec("b", 5, x="poison"),
        rec("b", 6), rec("c", 7),
    ]  # fmt: skip
    dispatcher.dispatch(records)
    assert [s for k, s in handled if k == "a"] == [1, 2, 4]
    assert [s for k, s in handled if k == "b"] == [3, 6]
    assert [s for k, s in handled if k == "c"] == [7]
    assert len(handled) == len(set(handled))  # nothing handled twice
    assert [letter.record["eventID"] for letter in sink.letters] == ["e5"]
    assert attempts["e2"] == 3


def test_an_async_handler_runs_keys_concurrently_each_in_order() -> None:
    running = 0
    peak = 0
    seen: dict[str, list[int]] = {}

    async def handle(record: StreamRecord) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        if record.new_image and record.new_image.get("x") == "boom":
            raise TimeoutError("slow receiver")
        seen.setdefault(record.keys["pk"], []).append(int(record.sequence_number))

    records = [rec(k, i * 10 + n) for i in range(3) for n, k in enumerate("abcdefgh")]
    records.insert(5, rec("c", 99, x="boom"))  # c fails after its first record
    consumer = record_handler(concurrency=4)(handle)
    result = consumer(records)
    assert 2 <= peak <= 4
    assert seen["a"] == [0, 10, 20]
    assert seen["c"] == [2]  # c's records after the failure wait for it
    assert result is not None
    assert result.failed_event_ids == {"e99"}


def test_kind_record_is_for_functions_only(tmp_path: Path) -> None:
    config = tmp_path / "dsp.toml"
    config.write_text(
        '[stream]\ntable = "orders"\n[checkpoints]\napplication = "x"\n[[routes]]\n'
        'name = "c"\nconsumer = "cache"\nkind = "record"\n[routes.options]\nkeys = ["k"]\n'
    )
    with pytest.raises(ConfigError, match='kind = "record" is for your own function'):
        load_settings(config, environ={})


# -- against Powertools ------------------------------------------------------------------------


def fails(message: str | None) -> bool:
    return message is not None and "fail" in message


def powertools_handler(record: DynamoDBRecord) -> None:
    assert record.dynamodb is not None
    message = (record.dynamodb.new_image or {}).get("Message")
    if fails(message):
        raise ValueError("Failed to process record.")


def ours(record: StreamRecord) -> None:
    """The same rule, on our record (routed with kind = "record")."""
    message = (record.new_image or {}).get("Message")
    if fails(message if isinstance(message, str) else None):
        raise ValueError("Failed to process record.")


def powertools_response(event: dict[str, Any]) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    response = process_partial_response(
        event=event, record_handler=powertools_handler, processor=processor, context=None
    )
    return dict(response)


@pytest.fixture
def lambda_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    config = tmp_path / "lambda.toml"
    config.write_text(
        f"""
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
lambda_tmp = true
[[routes]]
name = "per-record"
consumer = "tests.unit.core.test_record_handler:ours"
kind = "record"
"""
    )
    monkeypatch.setenv("DSP_CONFIG", str(config))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    aws_lambda.reset()
    yield
    aws_lambda.reset()


def powertools_event(messages: list[str], ids: list[str]) -> dict[str, Any]:
    """Records shaped like Powertools' dynamodb_event_factory (their batch tests)."""
    return {
        "Records": [
            {
                "eventID": str(n),
                "eventVersion": "1.0",
                "dynamodb": {
                    "Keys": {"Id": {"N": key}},
                    "NewImage": {"Message": {"S": message}, "Id": {"N": key}},
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                    "SequenceNumber": str(1000 + n),
                    "SizeBytes": 26,
                },
                "awsRegion": "us-west-2",
                "eventName": "INSERT",
                "eventSourceARN": "eventsource_arn",
                "eventSource": "aws:dynamodb",
            }
            for n, (message, key) in enumerate(zip(messages, ids, strict=True))
        ]
    }


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def test_powertools_fixture_success_alike(lambda_route: None) -> None:
    event = json.loads((EVENTS / "powertools_dynamoStreamEvent.json").read_text())
    assert failures(powertools_response(event)) == []
    assert failures(aws_lambda.handler(event, None)) == []


def test_the_same_records_fail_as_with_powertools_when_keys_differ(lambda_route: None) -> None:
    """Powertools' failure/success/failure batch, one key per record: the same report."""
    event = powertools_event(["failure", "success", "failure"], ["101", "102", "103"])
    theirs = failures(powertools_response(event))
    assert theirs == ["1000", "1002"]
    assert failures(aws_lambda.handler(event, None)) == theirs


def test_one_key_reports_from_its_first_failure_where_powertools_skips_ahead(
    lambda_route: None,
) -> None:
    """Powertools' batch as their tests build it: one key (Id 101) for every record. Lambda
    resumes from the lowest reported sequence number in both cases; we also report the
    key's later records, which we did not handle, so the success in between is handled
    after the failure, in order, not before it."""
    event = powertools_event(["failure", "success", "failure"], ["101", "101", "101"])
    theirs = failures(powertools_response(event))
    ours_ = failures(aws_lambda.handler(event, None))
    assert theirs == ["1000", "1002"]
    assert ours_ == ["1000", "1001", "1002"]
    assert min(ours_) == min(theirs)
    assert set(theirs) <= set(ours_)
