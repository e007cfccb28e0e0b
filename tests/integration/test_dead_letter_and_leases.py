"""Dead-letter destinations and the DynamoDB lease store against the moto server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from processor.core.dead_letters import DeadLetter
from processor.errors import LeaseLostError
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.sinks.jsonl import JsonlDeadLetterSink, read_dead_letters
from processor.sinks.sqs import SqsDeadLetterSink
from processor.sources.lineage import Shard
from processor.testing import make_record

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def entry(size: int = 10) -> DeadLetter:
    record = make_record({"pk": {"S": "a"}}, new_image={"pk": {"S": "a"}, "pad": {"S": "x" * size}})
    return DeadLetter(record.raw, "mirror", "ValueError", "boom", 3, "shard-1", NOW, NOW)


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    bodies = []
    for _ in range(10):
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_jsonl_sink_appends_whole_records_and_reads_back(tmp_path: Path) -> None:
    """Each entry is one JSON line holding the full record, and reads back equal."""
    path = tmp_path / "dl" / "dead.jsonl"
    sink = JsonlDeadLetterSink(path)
    first, second = entry(), entry()
    sink.send([first])
    sink.send([second])
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["record"] == first.record
    assert list(read_dead_letters(path)) == [first, second]


@pytest.mark.moto_only(reason="SQS: DynamoDB Local serves DynamoDB and Streams only")
def test_sqs_sink_sends_documents_and_overflows_large_ones(
    sqs: Any, tmp_path: Path, unique: str
) -> None:
    """Entries arrive on the queue whole; one too large for SQS goes to the file instead."""
    url = sqs.create_queue(QueueName=f"dlq-{unique}")["QueueUrl"]
    overflow = JsonlDeadLetterSink(tmp_path / "overflow.jsonl")
    sink = SqsDeadLetterSink(sqs, url, overflow=overflow)
    small = [entry() for _ in range(12)]
    big = entry(size=1100 * 1024)  # over SQS's 1 MiB
    sink.send([*small, big])
    bodies = drain(sqs, url)
    full = [b for b in bodies if "record" in b]
    assert len(full) == 12
    assert full[0]["record"] == small[0].record
    assert full[0]["route"] == "mirror"
    (pointer,) = [b for b in bodies if "overflow" in b]
    assert pointer["event_id"] == big.record["eventID"]
    assert [e.record for e in read_dead_letters(tmp_path / "overflow.jsonl")] == [big.record]


def test_dynamodb_lease_store_conditional_ownership(dynamodb: Any, unique: str) -> None:
    """Leases move only by conditional writes; an old owner cannot checkpoint after a takeover."""
    now = [1000.0]
    store = DynamoDBLeaseStore(
        dynamodb,
        table=f"leases-{unique}",
        application="app",
        stream_arn="arn",
        clock=lambda: now[0],
    )
    store.ensure_table()
    store.ensure_table()  # idempotent
    store.create_missing([Shard("s1", None, "1", None), Shard("s2", "s1", "5", None)], set())
    leases = {lease.shard_id: lease for lease in store.list_leases()}
    assert leases["s2"].parent_shard_id == "s1"
    assert leases["s1"].owner is None

    mine = store.take(leases["s1"], "a")
    assert mine is not None
    assert mine.counter == 1
    assert store.take(leases["s1"], "b") is None  # stale observation

    mine = store.checkpoint(mine, "123", finished=False)
    now[0] = 2000.0
    observed = {lease.shard_id: lease for lease in store.list_leases()}["s1"]
    assert observed.checkpoint == "123"
    assert observed.owner == "a"
    theirs = store.take(observed, "b")  # the worker decided it expired
    assert theirs is not None
    assert theirs.counter == 2
    with pytest.raises(LeaseLostError):
        store.checkpoint(mine, "124", finished=False)
    with pytest.raises(LeaseLostError):
        store.renew(mine)
    store.checkpoint(theirs, "130", finished=True)
    store.release(theirs)
    final = {lease.shard_id: lease for lease in store.list_leases()}["s1"]
    assert final.checkpoint == "130"
    assert final.finished
    assert final.owner is None
    assert store.take(final, "c") is None  # finished shards are never taken again


@pytest.mark.moto_only(reason="SQS: DynamoDB Local serves DynamoDB and Streams only")
def test_sqs_batches_are_filled_by_size_as_well_as_count(
    sqs: Any, tmp_path: Path, unique: str
) -> None:
    """Ten 200 KB letters exceed one request's 1 MiB: they go in several batches, each once."""
    url = sqs.create_queue(QueueName=f"dlq-{unique}")["QueueUrl"]
    sink = SqsDeadLetterSink(sqs, url, overflow=JsonlDeadLetterSink(tmp_path / "o.jsonl"))
    letters = [entry(size=200 * 1024) for _ in range(10)]
    sink.send(letters)
    bodies = drain(sqs, url)
    assert sorted(b["record"]["eventID"] for b in bodies) == sorted(
        e.record["eventID"] for e in letters
    )
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.moto_only(reason="SQS: DynamoDB Local serves DynamoDB and Streams only")
def test_a_letter_too_large_for_sqs_is_kept_whole_and_named_on_the_queue(
    sqs: Any, tmp_path: Path, unique: str
) -> None:
    """Over the limit: the whole letter goes to the overflow file, never truncated, and the
    queue gets a small message naming where it is."""
    url = sqs.create_queue(QueueName=f"dlq-{unique}")["QueueUrl"]
    overflow = tmp_path / "overflow.jsonl"
    sink = SqsDeadLetterSink(sqs, url, overflow=JsonlDeadLetterSink(overflow), max_bytes=64 * 1024)
    big = entry(size=100 * 1024)
    sink.send([big])
    assert [e.record for e in read_dead_letters(overflow)] == [big.record]
    (pointer,) = drain(sqs, url)
    assert pointer["overflow"] == str(overflow)
    assert pointer["event_id"] == big.record["eventID"]
    assert pointer["route"] == "mirror"


def test_only_the_entries_sqs_failed_are_sent_again() -> None:
    """A batch that partly fails: the accepted entries are not sent twice; entries SQS
    refuses for good (sender fault) go to the overflow file with the reason."""
    client = boto3.client(
        "sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    url = "https://sqs.us-east-1.amazonaws.com/1/dlq"
    letters = [entry() for _ in range(3)]
    bodies = [json.dumps(e.to_document(), separators=(",", ":")) for e in letters]
    stubber = Stubber(client)
    stubber.add_response(
        "send_message_batch",
        {
            "Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "x"}],
            "Failed": [
                {"Id": "1", "SenderFault": False, "Code": "InternalError"},
                {"Id": "2", "SenderFault": True, "Code": "InvalidParameterValue"},
            ],
        },
        {
            "QueueUrl": url,
            "Entries": [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)],
        },
    )
    stubber.add_response(
        "send_message_batch",
        {"Successful": [{"Id": "1", "MessageId": "m1", "MD5OfMessageBody": "x"}], "Failed": []},
        {"QueueUrl": url, "Entries": [{"Id": "1", "MessageBody": bodies[1]}]},
    )
    kept: list[DeadLetter] = []

    class Overflow:
        path = Path("/overflow")

        def send(self, entries: Any) -> None:
            kept.extend(entries)

    with stubber:
        SqsDeadLetterSink(client, url, overflow=Overflow(), sleep=lambda s: None).send(letters)
        stubber.assert_no_pending_responses()
    assert [e.record for e in kept] == [letters[2].record]
    assert "InvalidParameterValue" in kept[0].error_message
