"""A poison record among 100, through the real worker: dead-lettered whole, the rest once."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from processor.app import build_app
from processor.settings import load_settings
from processor.sinks.jsonl import read_dead_letters
from processor.testing import create_table

from . import transforms

MAX_RETRIES = 2


def run_worker(
    tmp_path: Path, endpoint: str, source: str, unique: str, extra_env: dict[str, str]
) -> Any:
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
table = "{source}"
poll_interval_min_s = 0.05
[checkpoints]
table = "leases-{unique}"
application = "poison-{unique}"
[batch]
max_records = 100
max_retries = {MAX_RETRIES}
bisect_on_error = true
retry_base_delay_s = 0.001
retry_max_delay_s = 0.01
[dead_letter]
path = "{tmp_path / "dead-letter.jsonl"}"
[[routes]]
name = "orders"
consumer = "tests.integration.transforms:poison"
"""
    )
    settings = load_settings(config, environ={"DSP_AWS__ENDPOINT_URL": endpoint, **extra_env})
    transforms.POISON_SEEN.clear()
    app = build_app(settings)
    app.worker.run(stop=threading.Event(), stop_when_idle=0.5)
    app.close()
    return app


def write_hundred(dynamodb: Any, source: str) -> None:
    create_table(dynamodb, source)
    for i in range(100):
        sk = "POISON" if i == 42 else f"{i:03d}"
        dynamodb.put_item(
            TableName=source,
            Item={"pk": {"S": f"TENANT#{i % 5}"}, "sk": {"S": sk}, "total": {"N": f"{i}.5"}},
        )


def checkpoint(dynamodb: Any, unique: str) -> str:
    (lease,) = dynamodb.query(
        TableName=f"leases-{unique}",
        KeyConditionExpression="application = :a",
        ExpressionAttributeValues={":a": {"S": f"poison-{unique}"}},
        ConsistentRead=True,
    )["Items"]
    return str(lease["checkpoint"]["S"])


def test_poison_record_goes_to_the_dead_letter_file_whole(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Bisection isolates the poison record; it is dead-lettered after exactly max_retries
    retries with its full image; the other 99 arrive once; the checkpoint passes it."""
    source = f"poison-{unique}"
    write_hundred(dynamodb, source)
    run_worker(tmp_path, endpoint, source, unique, {})
    (entry,) = read_dead_letters(tmp_path / "dead-letter.jsonl")
    assert entry.record["dynamodb"]["NewImage"] == {
        "pk": {"S": "TENANT#2"},
        "sk": {"S": "POISON"},
        "total": {"N": "42.5"},
    }
    assert entry.attempts == MAX_RETRIES + 1
    assert entry.error_type == "ValueError"
    assert entry.route == "orders"
    assert len(transforms.POISON_SEEN) == 99 == len(set(transforms.POISON_SEEN))
    last = max([*transforms.POISON_SEEN, entry.record["dynamodb"]["SequenceNumber"]], key=int)
    assert checkpoint(dynamodb, unique) == last


@pytest.mark.moto_only(reason="SQS: DynamoDB Local serves DynamoDB and Streams only")
def test_poison_record_goes_to_sqs_whole(
    tmp_path: Path, endpoint: str, dynamodb: Any, sqs: Any, unique: str
) -> None:
    """The same with an SQS dead-letter queue on the moto server."""
    source = f"poison-{unique}"
    write_hundred(dynamodb, source)
    url = sqs.create_queue(QueueName=f"dlq-{unique}")["QueueUrl"]
    run_worker(tmp_path, endpoint, source, unique, {"DSP_DEAD_LETTER__SQS_QUEUE_URL": url})
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)[
        "Messages"
    ]
    (body,) = [json.loads(m["Body"]) for m in messages]
    assert body["record"]["dynamodb"]["NewImage"]["sk"] == {"S": "POISON"}
    assert body["attempts"] == MAX_RETRIES + 1
    assert len(set(transforms.POISON_SEEN)) == 99
    assert not (tmp_path / "dead-letter.jsonl").exists()
