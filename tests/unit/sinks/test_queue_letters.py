"""Redrive from SQS when SQS hands messages back in no particular order (botocore's Stubber on
a real SQS client): a key's letters are still delivered in stream order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.stub import ANY, Stubber

from processor.core.consumer import BatchResult
from processor.core.dead_letters import DeadLetter
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.replay.queue_letters import redrive_queue
from processor.replay.redrive import Redelivery, RedriveReport
from processor.testing import make_record

NOW = datetime(2026, 12, 7, tzinfo=UTC)
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/dlq"


def message(n: int) -> dict[str, Any]:
    record = make_record({"pk": {"S": "k"}}, event_id=f"e{n}", sequence_number=str(100 + n))
    letter = DeadLetter(record.raw, "r", "Rejected", "HTTP 400", 1, "s", NOW, NOW)
    return {
        "MessageId": f"m{n}",
        "ReceiptHandle": f"h{n}",
        "Body": json.dumps(letter.to_document()),
    }


class NeverSent:
    def send(self, entries: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"nothing should fail again: {entries}")


def test_one_keys_letters_arrive_in_stream_order_whatever_order_sqs_returns() -> None:
    """SQS returns the key's later letters first, in two receives; the round is delivered
    sorted, in one call, and every message is deleted after."""
    sqs = boto3.client(
        "sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(sqs)
    receive = {
        "QueueUrl": QUEUE,
        "MaxNumberOfMessages": 10,
        "VisibilityTimeout": 900,
        "WaitTimeSeconds": 1,
    }
    stub.add_response("receive_message", {"Messages": [message(4), message(3)]}, receive)
    stub.add_response("receive_message", {"Messages": [message(2), message(1)]}, receive)
    stub.add_response("receive_message", {}, receive)
    stub.add_response(
        "delete_message_batch",
        {"Successful": [{"Id": str(i)} for i in range(4)], "Failed": []},
        {"QueueUrl": QUEUE, "Entries": ANY},
    )
    stub.add_response("receive_message", {}, receive)
    calls: list[list[str]] = []

    def consumer(records: Sequence[StreamRecord]) -> BatchResult | None:
        calls.append([r.sequence_number for r in records])
        return None

    report = RedriveReport()
    with stub:
        redrive_queue(
            sqs,
            QUEUE,
            Redelivery([Route("r", consumer)], RetryPolicy(max_retries=0), report),
            replace_into=NeverSent(),
            visibility_s=900,
        )
        stub.assert_no_pending_responses()
    assert calls == [["101", "102", "103", "104"]]
    assert report.delivered == {"r": 4}
