"""Dead-letter destinations and the DynamoDB lease store against the moto server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processor.checkpoints import DynamoDBLeaseStore
from processor.dead_letter import (
    DeadLetter,
    JsonlDeadLetterSink,
    SqsDeadLetterSink,
    read_dead_letters,
)
from processor.errors import LeaseLostError
from processor.shards import Shard
from processor.testing import make_record

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def entry(size: int = 10) -> DeadLetter:
    record = make_record({"pk": {"S": "a"}}, new_image={"pk": {"S": "a"}, "pad": {"S": "x" * size}})
    return DeadLetter(record.raw, "mirror", "ValueError", "boom", 3, "shard-1", NOW, NOW)


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
    big = entry(size=300 * 1024)
    sink.send([*small, big])
    bodies = []
    for _ in range(5):
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert len(bodies) == 12
    assert bodies[0]["record"] == small[0].record
    assert bodies[0]["route"] == "mirror"
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
