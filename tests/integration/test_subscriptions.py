"""Webhook subscriptions kept in a DynamoDB table (moto server): TTL cache and early refresh."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from consumers.webhook.subscriptions import TableSubscriptions
from processor.app import build_app
from processor.settings import load_settings
from processor.testing import WebhookReceiver, create_table, make_record

from .helpers import clients


def subscription(tenant: str, url: str, **extra: Any) -> dict[str, Any]:
    item = {
        "pk": {"S": f"TENANT#{tenant}"},
        "sk": {"S": "WEBHOOK#1"},
        "tenant": {"S": tenant},
        "url": {"S": url},
    }
    item.update(extra)
    return item


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_table_is_read_through_a_ttl_cache(endpoint: str, dynamodb: Any, unique: str) -> None:
    table = f"subs-{unique}"
    create_table(dynamodb, table)
    dynamodb.put_item(TableName=table, Item=subscription("acme", "http://h/v1"))
    dynamodb.put_item(
        TableName=table,
        Item=subscription("globex", "http://h/g", events={"SS": ["REMOVE"]}, secret={"S": "x"}),
    )
    dynamodb.put_item(
        TableName=table, Item={**subscription("off", "http://h/off"), "active": {"BOOL": False}}
    )
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "junk"}, "sk": {"S": "1"}})
    clock = Clock()
    subs = TableSubscriptions(clients(endpoint).dynamodb, table, ttl_s=300, clock=clock)
    assert [s.url for s in subs.lookup("acme", "INSERT")] == ["http://h/v1"]
    assert subs.lookup("globex", "INSERT") == []
    (remove,) = subs.lookup("globex", "REMOVE")
    assert remove.secrets == ("x",)
    assert subs.lookup("off", "INSERT") == []  # inactive
    assert subs.lookup(None, "INSERT") == []

    dynamodb.put_item(TableName=table, Item=subscription("acme", "http://h/v2"))
    clock.now = 299
    assert [s.url for s in subs.lookup("acme", "INSERT")] == ["http://h/v1"]  # cached
    assert subs.loads == 1
    clock.now = 301
    assert [s.url for s in subs.lookup("acme", "INSERT")] == ["http://h/v2"]
    assert subs.loads == 2

    # a change seen on the table's own stream refreshes at once
    dynamodb.put_item(TableName=table, Item=subscription("acme", "http://h/v3"))
    subs.watch([make_record({"pk": {"S": "TENANT#acme"}, "sk": {"S": "ORDER#1"}})])
    assert [s.url for s in subs.lookup("acme", "INSERT")] == ["http://h/v2"]  # not a subscription
    subs.watch(
        [
            make_record(
                {"pk": {"S": "TENANT#acme"}, "sk": {"S": "WEBHOOK#1"}},
                new_image=subscription("acme", "http://h/v3"),
            )
        ]
    )
    assert [s.url for s in subs.lookup("acme", "INSERT")] == ["http://h/v3"]
    assert subs.loads == 3


def test_a_subscription_change_on_the_worked_stream_applies_to_the_next_record(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str, receiver: WebhookReceiver
) -> None:
    """Single-table design: subscriptions live in the table the worker reads. Changing the URL
    re-routes the very next order, long before the 300 s TTL."""
    table = f"app-{unique}"
    create_table(dynamodb, table)
    dynamodb.put_item(TableName=table, Item=subscription("acme", f"{receiver.url}/v1"))
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
table = "{table}"
starting_position = "LATEST"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.1
[checkpoints]
table = "leases-{unique}"
application = "subs-{unique}"
[dead_letter]
path = "{tmp_path / "dead-letter.jsonl"}"
[http]
allowed_networks = ["127.0.0.0/8"]  # the loopback receiver stands in for a tenant's server
[[routes]]
name = "hooks"
consumer = "webhook"
filter = '{{"dynamodb": {{"Keys": {{"sk": {{"S": [{{"prefix": "ORDER#"}}]}}}}}}}}'
[routes.options]
subscriptions_table = "{table}"
"""
    )
    app = build_app(load_settings(config, environ={"DSP_AWS__ENDPOINT_URL": endpoint}))
    stop = threading.Event()
    worker = threading.Thread(target=app.worker.run, kwargs={"stop": stop})
    worker.start()
    try:
        # LATEST is the tip when the reader asks for its iterator, not when the lease is
        # taken: write only once a GetRecords came back empty (DynamoDB Local is slow here)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shards = app.worker.state()["shards"]
            if shards and all(s["caught_up"] for s in shards):
                break
            time.sleep(0.05)
        order = {"pk": {"S": "TENANT#acme"}, "sk": {"S": "ORDER#1"}, "total": {"N": "1"}}
        dynamodb.put_item(TableName=table, Item=order)
        assert receiver.wait_for(1, path="/v1")
        dynamodb.put_item(TableName=table, Item=subscription("acme", f"{receiver.url}/v2"))
        dynamodb.put_item(TableName=table, Item={**order, "sk": {"S": "ORDER#2"}})
        assert receiver.wait_for(1, path="/v2")
    finally:
        stop.set()
        worker.join(timeout=30)
        app.close()
    assert [r.json()["keys"]["sk"] for r in receiver.received("/v1")] == ["ORDER#1"]
    assert [r.json()["keys"]["sk"] for r in receiver.received("/v2")] == ["ORDER#2"]
    assert [r.json()["tenant"] for r in receiver.received()] == ["acme", "acme"]
    assert app.stats["hooks"]["subscription_loads"] == 2
