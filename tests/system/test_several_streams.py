"""Several streams in one worker (`[[streams]]`): two DynamoDB tables and a Kinesis Data
Streams destination read by one `dsp run`; a second replica joins and the Kinesis stream's
leases are shared out; the first stops and the second takes every stream's leases. Every
change reaches its stream's route once and in key order, and the route that takes every
stream gets them all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from prometheus_client.parser import text_string_to_metric_families

from processor.testing import WebhookReceiver, create_table, kds_payload, put_change
from tests.system.cli import dsp_with

pytestmark = [
    pytest.mark.slow,
    pytest.mark.moto_only(reason="Kinesis: moto serves it, DynamoDB Local does not"),
]

KEYS = ("a", "b", "c")
LEASE_TIMEOUT_S = 3.0


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def lease_owners(dynamodb: Any, table: str, namespace: str) -> Counter[str]:
    try:
        items = dynamodb.query(
            TableName=table,
            KeyConditionExpression="application = :a",
            ExpressionAttributeValues={":a": {"S": namespace}},
            ConsistentRead=True,
        )["Items"]
    except dynamodb.exceptions.ResourceNotFoundException:
        return Counter()
    return Counter(
        item["owner"]["S"]
        for item in items
        if "owner" in item and not item.get("finished", {"BOOL": False})["BOOL"]
    )


class Writer:
    """Versions 1, 2, ... of every key, on each of the three sources."""

    def __init__(self, dynamodb: Any, kinesis: Any, unique: str) -> None:
        self.dynamodb, self.kinesis, self.unique = dynamodb, kinesis, unique
        self.version = 0

    def round(self) -> None:
        self.version += 1
        for table in (f"orders-{self.unique}", f"customers-{self.unique}"):
            for key in KEYS:
                self.dynamodb.put_item(
                    TableName=table,
                    Item={"pk": {"S": key}, "v": {"N": str(self.version)}},
                )
        for key in KEYS:
            keys = {"pk": {"S": key}}
            image = {**keys, "v": {"N": str(self.version)}}
            payload = kds_payload(
                keys, event_name="MODIFY", new_image=image, table=f"payments-{self.unique}"
            )
            put_change(self.kinesis, f"payments-{self.unique}", payload, keys)


def versions(receiver: WebhookReceiver, path: str) -> dict[str, list[int]]:
    """Per key, the versions delivered to ``path``, in delivery order."""
    out: dict[str, list[int]] = defaultdict(list)
    for request in receiver.received(path):
        body = request.json()
        out[body["keys"]["pk"]].append(int(body["new_image"]["v"]))
    return dict(out)


def table_of(receiver: WebhookReceiver, path: str) -> Counter[str]:
    return Counter(r.json()["table_name"] for r in receiver.received(path))


@pytest.fixture
def sources(endpoint: str, dynamodb: Any, unique: str) -> Writer:
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    for table in (f"orders-{unique}", f"customers-{unique}"):
        create_table(dynamodb, table, keys=("pk",))
    create_table(dynamodb, f"payments-{unique}", keys=("pk",), stream_view=None)
    kinesis.create_stream(StreamName=f"payments-{unique}", ShardCount=4)
    return Writer(dynamodb, kinesis, unique)


def test_two_tables_and_a_kinesis_stream_in_one_worker_with_leases_handed_between_replicas(
    tmp_path: Path,
    endpoint: str,
    dynamodb: Any,
    receiver: WebhookReceiver,
    unique: str,
    sources: Writer,
) -> None:
    application = f"several-{unique}"
    leases = f"leases-{unique}"
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[[streams]]
name = "orders"
table = "orders-{unique}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.2
discovery_interval_s = 2

[[streams]]
name = "customers"
table = "customers-{unique}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.2
discovery_interval_s = 2

[[streams]]
name = "payments"
source = "kinesis"
kinesis_stream = "payments-{unique}"
table = "payments-{unique}"
poll_interval_min_s = 0.2
poll_interval_max_s = 0.4
discovery_interval_s = 2

[checkpoints]
table = "{leases}"
application = "{application}"
lease_timeout_s = {LEASE_TIMEOUT_S}
renew_interval_s = 0.5
lease_scan_interval_s = 0.5

[dead_letter]
path = "{tmp_path / "dl.jsonl"}"

[[routes]]
name = "orders-hook"
consumer = "webhook"
streams = ["orders"]
options = {{ url = "{receiver.url}/orders", concurrency = 1 }}

[[routes]]
name = "customers-hook"
consumer = "webhook"
streams = ["customers"]
options = {{ url = "{receiver.url}/customers", concurrency = 1 }}

[[routes]]
name = "payments-hook"
consumer = "webhook"
streams = ["payments"]
options = {{ url = "{receiver.url}/payments", concurrency = 1 }}

[[routes]]
name = "everything"
consumer = "webhook"
options = {{ url = "{receiver.url}/all", concurrency = 1 }}
"""
    )
    env = {**os.environ, "DSP_AWS__ENDPOINT_URL": endpoint, "DSP_LOGGING__LEVEL": "WARNING"}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    ports = {"p1": _free_port(), "p2": _free_port()}

    def start(name: str) -> None:
        log_file = (tmp_path / f"{name}.log").open("wb")
        processes[name] = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "run", "--config", str(config)],
            env={
                **env,
                "DSP_CHECKPOINTS__OWNER": name,
                "DSP_OBSERVABILITY__METRICS_PORT": str(ports[name]),
                "DSP_OBSERVABILITY__HOST": "127.0.0.1",
            },
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        log_file.close()

    def delivered(rounds: int) -> bool:
        per_stream = 3 * len(KEYS) * rounds
        return (
            all(
                len(receiver.received(f"/{stream}")) >= len(KEYS) * rounds
                for stream in ("orders", "customers", "payments")
            )
            and len(receiver.received("/all")) >= per_stream
        )

    def owners(stream: str) -> Counter[str]:
        return lease_owners(dynamodb, leases, f"{application}/{stream}")

    metrics = ""
    try:
        sources.round()
        start("p1")
        wait_until(lambda: delivered(1), 120, "round 1 delivered by p1")
        assert owners("payments") == Counter({"p1": 4})
        assert owners("orders") == owners("customers") == Counter({"p1": 1})

        start("p2")  # the Kinesis stream's four shards are shared out, two each
        wait_until(lambda: owners("payments") == Counter({"p1": 2, "p2": 2}), 120, "payments 2/2")
        sources.round()
        wait_until(lambda: delivered(2), 120, "round 2 delivered by both")
        url = f"http://127.0.0.1:{ports['p1']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            metrics = answer.read().decode()

        processes["p1"].send_signal(signal.SIGTERM)  # its leases are released and taken
        assert processes["p1"].wait(timeout=60) == 0
        for stream, shards in (("orders", 1), ("customers", 1), ("payments", 4)):
            wait_until(
                lambda s=stream, n=shards: owners(s) == Counter({"p2": n}),  # type: ignore[misc]
                120,
                f"p2 owns {stream}",
            )
        sources.round()
        wait_until(lambda: delivered(3), 120, "round 3 delivered by p2")
        status = dsp_with(config, env)("status", "--json")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    assert processes["p2"].returncode == 0, (tmp_path / "p2.log").read_text()

    # each stream's records went to its own route, once each and in key order
    for stream in ("orders", "customers", "payments"):
        assert versions(receiver, f"/{stream}") == {k: [1, 2, 3] for k in KEYS}, stream
        assert table_of(receiver, f"/{stream}") == Counter({f"{stream}-{unique}": 9})
    # the route without `streams` took every stream's records, once each, in key order
    everything: dict[tuple[str, str], list[int]] = defaultdict(list)
    for request in receiver.received("/all"):
        body = request.json()
        everything[(body["table_name"], body["keys"]["pk"])].append(int(body["new_image"]["v"]))
    assert everything == {
        (f"{stream}-{unique}", key): [1, 2, 3]
        for stream in ("orders", "customers", "payments")
        for key in KEYS
    }
    assert not (tmp_path / "dl.jsonl").exists() or not (tmp_path / "dl.jsonl").read_text()

    # one lease table, a namespace per stream
    namespaces = {
        item["application"]["S"]
        for item in dynamodb.scan(TableName=leases, ConsistentRead=True)["Items"]
    }
    assert namespaces == {f"{application}/{s}" for s in ("orders", "customers", "payments")}
    # metrics carry the stream (p1's, read while it held two of the Kinesis shards)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    assert samples[("dsp_leases_owned", (("stream", "payments"),))] == 2
    assert samples[("dsp_leases_owned", (("stream", "orders"),))] == 1
    for route, stream in (("orders-hook", "orders"), ("everything", "payments")):
        labels = (("outcome", "delivered"), ("route", route), ("stream", stream))
        assert samples[("dsp_records_total", labels)] >= len(KEYS)
    assert ("dsp_records_total", (("outcome", "delivered"), ("route", "orders-hook"),
            ("stream", "payments"))) not in samples  # fmt: skip
    # dsp status groups the leases by stream
    assert status.returncode == 0, status.stderr
    grouped = json.loads(status.stdout)["streams"]
    assert sorted(grouped) == ["customers", "orders", "payments"]
    assert grouped["payments"]["totals"]["shards"] == 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_check_config_capture_and_replay_handle_every_stream(
    tmp_path: Path, endpoint: str, dynamodb: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """check-config resolves both tables; capture writes one archive per stream; a replay
    delivers both streams again through their own routes, in a namespace per stream; a file
    replay needs --stream, and with it goes through that stream's routes."""
    for name in ("orders", "customers"):
        create_table(dynamodb, f"{name}-{unique}", keys=("pk",))
        for key in KEYS:
            dynamodb.put_item(TableName=f"{name}-{unique}", Item={"pk": {"S": key}})
    application = f"tools-{unique}"
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[[streams]]
name = "orders"
table = "orders-{unique}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.1
[[streams]]
name = "customers"
table = "customers-{unique}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.1
[checkpoints]
table = "leases-{unique}"
application = "{application}"
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "orders-hook"
consumer = "webhook"
streams = ["orders"]
options = {{ url = "{receiver.url}/orders" }}
[[routes]]
name = "customers-hook"
consumer = "webhook"
streams = ["customers"]
options = {{ url = "{receiver.url}/customers" }}
"""
    )
    dsp = dsp_with(
        config, {**os.environ, "DSP_AWS__ENDPOINT_URL": endpoint, "DSP_LOGGING__LEVEL": "ERROR"}
    )
    checked = dsp("check-config")
    assert checked.returncode == 0, checked.stderr
    assert "2 routes, 2 streams" in checked.stdout
    assert f"orders: stream of table orders-{unique} resolved" in checked.stdout
    assert f"customers: stream of table customers-{unique} resolved" in checked.stdout

    archive = tmp_path / "archive.jsonl.gz"
    captured = dsp("capture", "--out", str(archive), "--stop-when-idle", "0.5")
    assert captured.returncode == 0, captured.stderr
    assert "captured 6 records" in captured.stdout
    files = sorted(p.name for p in tmp_path.glob("archive-*"))
    assert files == ["archive-customers-000001.jsonl.gz", "archive-orders-000001.jsonl.gz"]

    replayed = dsp("replay", "--from", "trim-horizon", "--idle-s", "0.5")
    assert replayed.returncode == 0, replayed.stderr
    for name in ("orders", "customers"):
        assert sorted(versions_of(receiver, f"/{name}")) == sorted(KEYS)
        assert table_of(receiver, f"/{name}") == Counter({f"{name}-{unique}": 3})
    namespaces = {
        item["application"]["S"]
        for item in dynamodb.scan(TableName=f"leases-{unique}", ConsistentRead=True)["Items"]
    }
    replay_spaces = {n for n in namespaces if not n.startswith(f"{application}-capture/")}
    assert len(replay_spaces) == 2
    assert {n.rsplit("/", 1)[1] for n in replay_spaces} == {"orders", "customers"}
    assert {n.rsplit("/", 1)[0] for n in replay_spaces} != {application}  # not the live one

    refused = dsp("replay", "--from-file", str(tmp_path / "archive-orders-000001.jsonl.gz"))
    assert refused.returncode == 2
    assert "streams = 'orders, customers'" in refused.stderr
    assert "--stream" in refused.stderr
    from_file = dsp(
        "replay",
        "--stream",
        "orders",
        "--from-file",
        str(tmp_path / "archive-orders-000001.jsonl.gz"),
    )
    assert from_file.returncode == 0, from_file.stderr
    assert "replayed 3 archived records" in from_file.stdout
    assert len(receiver.received("/orders")) == 6
    assert len(receiver.received("/customers")) == 3


def versions_of(receiver: WebhookReceiver, path: str) -> list[str]:
    return [r.json()["keys"]["pk"] for r in receiver.received(path)]
