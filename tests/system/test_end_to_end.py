"""`dsp run` end to end against the moto server, Redis and a local webhook receiver."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from standardwebhooks import Webhook

from processor.testing import WebhookReceiver, create_table, scan_all
from processor.webhooks.signatures import new_secret
from tests.conftest import REDIS_URL

TENANTS = ("acme", "globex", "initech", "umbrella")
SECRET = new_secret()


def write_config(path: Path, unique: str) -> Path:
    path.write_text(
        f"""
[aws]
region = "us-east-1"
[stream]
table = "orders-{unique}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.2
[checkpoints]
table = "leases-{unique}"
application = "e2e-{unique}"
lease_timeout_s = 10
renew_interval_s = 2
[dead_letter]
path = "{path.parent / "dead-letter.jsonl"}"
[logging]
level = "INFO"
format = "json"

[[routes]]
name = "mirror"
consumer = "batch_write"
filter = '{{"eventName": ["INSERT", "MODIFY", "REMOVE"]}}'
[routes.options]
table = "orders-mirror-{unique}"

[[routes]]
name = "notify"
consumer = "webhook"
[routes.options]
url = "http://127.0.0.1:9/overridden"

[[routes]]
name = "invalidate"
consumer = "cache"
[routes.options]
keys = ["e2e-{unique}:order:{{pk}}:{{sk}}"]
redis_url = "{REDIS_URL}"
"""
    )
    return path


def write_changes(dynamodb: Any, table: str, rng: random.Random) -> list[tuple[str, str]]:
    """Inserts, updates and deletes across tenants; returns the keys written."""
    keys = []
    for i in range(200):
        key = (f"TENANT#{TENANTS[i % 4]}", f"ORDER#{i:04d}")
        dynamodb.put_item(
            TableName=table,
            Item={
                "pk": {"S": key[0]},
                "sk": {"S": key[1]},
                "total": {"N": f"{rng.randint(1, 10**6)}.{rng.randint(0, 99):02d}"},
                "big": {"N": "12345678901234567890123456789012345678"},
                "tags": {"SS": [TENANTS[i % 4], "order"]},
                "lines": {
                    "L": [{"M": {"sku": {"S": f"sku-{j}"}, "qty": {"N": str(j)}}} for j in range(2)]
                },
                "blob": {"B": bytes([i % 256, 255 - i % 256])},
            },
        )
        keys.append(key)
    for key in rng.sample(keys, 120):
        dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "paid"}},
        )
    for key in rng.sample(keys, 60):
        dynamodb.delete_item(TableName=table, Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}})
    return keys


def dsp_run(
    config: Path, endpoint: str, receiver: WebhookReceiver
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DSP_AWS__ENDPOINT_URL": endpoint,
        "DSP_ROUTES__NOTIFY__OPTIONS__URL": f"{receiver.url}/hooks/orders",
        "DSP_ROUTES__NOTIFY__OPTIONS__SECRET": SECRET,
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "processor.cli",
            "run",
            "--config",
            str(config),
            "--stop-when-idle",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_run_mirrors_announces_and_invalidates_every_change_once(
    tmp_path: Path,
    endpoint: str,
    dynamodb: Any,
    redis_client: redis.Redis,
    receiver: WebhookReceiver,
    unique: str,
) -> None:
    """Mirror == source, one signed webhook per change, changed cache gone; rerun: nothing."""
    source, mirror = f"orders-{unique}", f"orders-mirror-{unique}"
    create_table(dynamodb, source)
    create_table(dynamodb, mirror, stream_view=None)
    prefix = f"e2e-{unique}:order:"
    keys = [(f"TENANT#{TENANTS[i % 4]}", f"ORDER#{i:04d}") for i in range(200)]
    bystanders = [(f"TENANT#{TENANTS[i % 4]}", f"ORDER#{i:04d}") for i in range(1000, 1020)]
    redis_client.mset({f"{prefix}{pk}:{sk}": "cached" for pk, sk in keys + bystanders})

    write_changes(dynamodb, source, random.Random(11))
    changes = 200 + 120 + 60
    config = write_config(tmp_path / "dsp.toml", unique)

    first = dsp_run(config, endpoint, receiver)
    assert first.returncode == 0, first.stderr[-3000:]

    # the mirror equals the source, item for item
    def by_key(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(i["pk"]["S"], i["sk"]["S"]): i for i in items}

    assert by_key(scan_all(dynamodb, mirror)) == by_key(scan_all(dynamodb, source))
    assert len(scan_all(dynamodb, mirror)) == 140

    # every change reached the receiver exactly once, signed
    received = receiver.received("/hooks/orders")
    ids = Counter(r.headers["Idempotency-Key"] for r in received)
    assert len(ids) == changes
    assert set(ids.values()) == {1}
    for request in received:
        headers = request.headers
        Webhook(SECRET).verify(request.body, headers)
        assert request.json()["event_id"] == request.headers["Idempotency-Key"]
    names = Counter(r.json()["event_name"] for r in received)
    assert names == {"INSERT": 200, "MODIFY": 120, "REMOVE": 60}
    body = next(r.json() for r in received if r.json()["event_name"] == "INSERT")
    assert body["table_name"] == source
    assert body["new_image"]["big"] == 12345678901234567890123456789012345678
    assert body["new_image"]["tags"] == sorted(body["new_image"]["tags"])
    assert set(body) == {
        "event_id",
        "event_name",
        "table_name",
        "tenant",
        "keys",
        "new_image",
        "old_image",
        "sequence_number",
        "approximate_creation_time",
    }
    assert body["approximate_creation_time"].endswith("Z")
    assert body["tenant"] == body["keys"]["pk"].removeprefix("TENANT#")

    # cache entries of changed items are gone, the others remain
    assert not any(redis_client.exists(f"{prefix}{pk}:{sk}") for pk, sk in keys)
    assert all(redis_client.exists(f"{prefix}{pk}:{sk}") for pk, sk in bystanders)

    # logs: JSON, one line per batch and route, with shard and sequence bound
    lines = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    batches = [line for line in lines if line["event"] == "batch_dispatched"]
    assert batches
    assert all(b["shard_id"] and b["sequence_number"] and b["route"] for b in batches)
    assert sum(b["records"] for b in batches if b["route"] == "notify") == changes

    # a second run on the same application delivers nothing new
    second = dsp_run(config, endpoint, receiver)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(receiver.received("/hooks/orders")) == changes
    rows = {line.split()[0]: line.split() for line in second.stdout.splitlines()[2:]}
    assert {name: row[2] for name, row in rows.items()} == {
        "mirror": "0",
        "notify": "0",
        "invalidate": "0",
    }
