"""Dead letters in SQS: `dsp dead-letter redrive` drains the queue, `list` and `count` read it
without consuming it (moto's SQS)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from processor.sinks.jsonl import read_dead_letters
from processor.testing import WebhookReceiver, create_table
from tests.system.cli import Dsp, dsp_with

pytestmark = pytest.mark.moto_only(reason="dead letters go to SQS, which moto serves")


def queue_bodies(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message now in the queue (read, then made visible again)."""
    seen: list[Any] = []
    while answer := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30
    ).get("Messages"):
        seen += answer
    for message in seen:
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return [_body(m["Body"]) for m in seen]


def _body(text: str) -> dict[str, Any]:
    try:
        return dict(json.loads(text))
    except ValueError:
        return {"raw": text}


def setup(
    tmp_path: Path,
    endpoint: str,
    dynamodb: Any,
    sqs: Any,
    receiver: WebhookReceiver,
    unique: str,
    *,
    records: int = 6,
    extra: str = "",
    pad: int = 0,
) -> tuple[Dsp, str, Path]:
    """A run whose webhook refused every record for good (HTTP 400): ``records`` letters in
    the queue. Returns the dsp runner, the queue URL and the overflow file."""
    source = f"sqsdl-{unique}"
    create_table(dynamodb, source)
    for i in range(records):
        # three items, each changed several times: per-item order is what redrive must keep
        item = {
            "pk": {"S": f"k{i % 3}"},
            "sk": {"S": "0"},
            "n": {"N": str(i)},
            "pad": {"S": "x" * (pad + 1)},
        }
        dynamodb.put_item(TableName=source, Item=item)
    queue_url = sqs.create_queue(QueueName=f"dlq-{unique}")["QueueUrl"]
    overflow = tmp_path / "overflow.jsonl"
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[aws]
region = "us-east-1"
[stream]
table = "{source}"
poll_interval_min_s = 0.05
[checkpoints]
table = "leases-{unique}"
application = "sqsdl-{unique}"
[batch]
max_retries = 0
bisect_on_error = false
[dead_letter]
path = "{overflow}"
sqs_queue_url = "{queue_url}"
{extra}
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/h"
max_attempts = 1
"""
    )
    env = {**os.environ, "DSP_AWS__ENDPOINT_URL": endpoint}

    dsp = dsp_with(config, env, timeout_s=120)

    receiver.script("/h", [400])  # refused for good: every record is dead-lettered
    ran = dsp("run", "--stop-when-idle", "0.5")
    assert ran.returncode == 0, ran.stderr[-2000:]
    return dsp, queue_url, overflow


def test_six_refused_records_in_the_queue_are_delivered_and_the_queue_emptied(
    tmp_path: Path, endpoint: str, dynamodb: Any, sqs: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """The issue's case: six letters in SQS; once the receiver is fixed, redrive delivers all
    six, each key in order, and leaves the queue empty (on main it read only the file)."""
    dsp, queue_url, _ = setup(tmp_path, endpoint, dynamodb, sqs, receiver, unique)
    assert len(queue_bodies(sqs, queue_url)) == 6
    receiver.script("/h", [200])
    result = dsp("dead-letter", "redrive")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "6 delivered (hook: 6)" in result.stdout
    delivered = [r.json() for r in receiver.received("/h")]
    assert len(delivered) == 6
    for key in ("k0", "k1", "k2"):  # each item's changes in stream order (pk and sk: one item)
        numbers = [int(b["sequence_number"]) for b in delivered if b["keys"]["pk"] == key]
        assert len(numbers) == 2
        assert numbers == sorted(numbers)
    assert queue_bodies(sqs, queue_url) == []


def test_a_record_that_fails_again_is_replaced_with_its_new_error(
    tmp_path: Path, endpoint: str, dynamodb: Any, sqs: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """Still refused: the redrive exits 1, and each message is replaced by one with the new
    error; nothing is lost and nothing is doubled."""
    dsp, queue_url, _ = setup(tmp_path, endpoint, dynamodb, sqs, receiver, unique, records=3)
    before = queue_bodies(sqs, queue_url)
    receiver.script("/h", [422])
    result = dsp("dead-letter", "redrive", "--source", "sqs")
    assert result.returncode == 1
    assert "3 failed again" in result.stdout
    after = queue_bodies(sqs, queue_url)
    assert sorted(b["event_id"] for b in after) == sorted(b["event_id"] for b in before)
    assert all("422" in b["error"]["message"] for b in after)


def test_a_malformed_message_is_left_and_named_and_the_rest_is_delivered(
    tmp_path: Path, endpoint: str, dynamodb: Any, sqs: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """A message that is not a letter, and a truncated one, stay in the queue and are named;
    the letters beside them are delivered."""
    dsp, queue_url, _ = setup(tmp_path, endpoint, dynamodb, sqs, receiver, unique, records=2)
    sqs.send_message(QueueUrl=queue_url, MessageBody="hello")
    good = queue_bodies(sqs, queue_url)[0]
    truncated = json.dumps(good)[:80]
    sqs.send_message(QueueUrl=queue_url, MessageBody=truncated)
    receiver.script("/h", [200])
    result = dsp("dead-letter", "redrive")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 delivered" in result.stdout
    assert result.stdout.count("left in the queue: message") == 2
    assert "not JSON" in result.stdout
    left = queue_bodies(sqs, queue_url)
    assert sorted(b["raw"] for b in left) == sorted(["hello", truncated])


def test_list_and_count_read_the_queue_without_consuming_it(
    tmp_path: Path, endpoint: str, dynamodb: Any, sqs: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """`list --json` shows every letter with its source; `count` agrees; the messages are all
    visible again afterwards and a redrive still delivers them."""
    dsp, queue_url, _ = setup(tmp_path, endpoint, dynamodb, sqs, receiver, unique, records=4)
    listed = dsp("dead-letter", "list", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = json.loads(listed.stdout)
    assert [r["source"] for r in rows] == ["sqs"] * 4
    assert {r["route"] for r in rows} == {"hook"}
    assert len(json.loads(dsp("dead-letter", "list", "--json", "--limit", "2").stdout)) == 2
    table = dsp("dead-letter", "list").stdout
    assert table.splitlines()[0].split()[:2] == ["source", "route"]
    counted = json.loads(dsp("dead-letter", "count", "--json").stdout)
    assert counted["sqs"]["visible"] == 4
    assert counted["sqs"]["in_flight"] == 0
    assert counted["file"]["letters"] == 0
    assert len(queue_bodies(sqs, queue_url)) == 4  # nothing consumed
    receiver.script("/h", [200])
    assert "4 delivered" in dsp("dead-letter", "redrive").stdout


def test_letters_too_large_for_a_message_resolve_to_the_overflow_file(
    tmp_path: Path, endpoint: str, dynamodb: Any, sqs: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """With a 1 KiB message limit every letter goes to the overflow file and the queue gets
    pointers; `--source sqs` resolves each pointer to its letter and delivers it."""
    dsp, queue_url, overflow = setup(
        tmp_path,
        endpoint,
        dynamodb,
        sqs,
        receiver,
        unique,
        records=3,
        extra="sqs_max_bytes = 1024",
        pad=2048,
    )
    pointers = queue_bodies(sqs, queue_url)
    assert all(b["overflow"] == str(overflow) for b in pointers)
    assert len(list(read_dead_letters(overflow))) == 3
    receiver.script("/h", [200])
    result = dsp("dead-letter", "redrive", "--source", "sqs")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 delivered" in result.stdout
    assert queue_bodies(sqs, queue_url) == []


def test_two_redrives_at_once_lose_nothing(
    tmp_path: Path, endpoint: str, dynamodb: Any, sqs: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """Two redrives of one queue at the same time: every record is delivered (at least once;
    SQS's visibility keeps a message with one of them) and the queue ends empty."""
    dsp, queue_url, _ = setup(tmp_path, endpoint, dynamodb, sqs, receiver, unique, records=9)
    receiver.script("/h", [200])
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(dsp("dead-letter", "redrive")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-1000:] for r in results]
    delivered = {r.json()["event_id"] for r in receiver.received("/h")}
    assert len(delivered) == 9
    assert queue_bodies(sqs, queue_url) == []
    # a record SQS handed to both (at-least-once) carries one Idempotency-Key each time
    keys: dict[str, set[str]] = {}
    for request in receiver.received("/h"):
        headers = {k.lower(): v for k, v in request.headers.items()}
        keys.setdefault(request.json()["event_id"], set()).add(headers["idempotency-key"])
    assert all(len(ids) == 1 for ids in keys.values())
