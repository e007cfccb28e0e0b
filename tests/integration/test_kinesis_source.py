"""The worker on a Kinesis Data Streams for DynamoDB stream (moto Kinesis): several shards, a
split, then a merge of the split's children. Every change arrives once and in order per key,
each parent is read to its end (known from ListShards' EndingSequenceNumber: moto's closed
shards never end through GetRecords) before its children, and the merged shard's lease knows
both parents.

moto keeps routing puts to a split shard (its hash range still covers them), so the changes
are written before the resharding: what is tested is lineage and shard ends, not routing."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest

from processor.app import build_app
from processor.core.consumer import RouteStats
from processor.core.dead_letters import DeadLetter
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route, compile_filters
from processor.runtime.reader import ReaderSettings
from processor.runtime.worker import Worker, WorkerSettings
from processor.settings import load_settings
from processor.sources.kinesis.adapter import KinesisSource
from processor.testing import MemoryLeaseStore, create_table, kds_payload, put_change
from tests.integration.helpers import kinesis_config

pytestmark = pytest.mark.moto_only(reason="Kinesis: moto serves it, DynamoDB Local does not")

KEYS = [f"k{i}" for i in range(6)]


class Seen:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[StreamRecord] = []

    def __call__(self, records: Sequence[StreamRecord]) -> None:
        with self.lock:
            self.records.extend(records)

    def count(self) -> int:
        with self.lock:
            return len(self.records)


class Letters:
    def __init__(self) -> None:
        self.entries: list[DeadLetter] = []

    def send(self, entries: Sequence[DeadLetter]) -> None:
        self.entries.extend(entries)


def write(kinesis: Any, stream: str, version: int) -> None:
    for key in KEYS:
        keys = {"pk": {"S": key}}
        image = {**keys, "version": {"N": str(version)}}
        put_change(kinesis, stream, kds_payload(keys, event_name="MODIFY", new_image=image), keys)


def test_a_worker_reads_kinesis_shards_to_their_ends_parents_first(
    endpoint: str, unique: str
) -> None:
    """Two shards; one split, its children merged; the worker reads the whole tree."""
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    name = f"kds-{unique}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    write(kinesis, name, 1)
    write(kinesis, name, 2)
    first = kinesis.list_shards(StreamName=name)["Shards"][0]
    kinesis.split_shard(
        StreamName=name,
        ShardToSplit=first["ShardId"],
        NewStartingHashKey=str(int(first["HashKeyRange"]["EndingHashKey"]) // 2),
    )
    children = [
        s["ShardId"]
        for s in kinesis.list_shards(StreamName=name)["Shards"]
        if s.get("ParentShardId") == first["ShardId"]
    ]
    kinesis.merge_shards(
        StreamName=name, ShardToMerge=children[0], AdjacentShardToMerge=children[1]
    )
    source = KinesisSource(kinesis)
    seen, store, stats = Seen(), MemoryLeaseStore(), {"r": RouteStats()}
    worker = Worker(
        adapter=source,
        stream_arn=arn,
        store=store,
        dispatcher_for=lambda stop: Dispatcher(
            [Route("r", seen)], Letters(), RetryPolicy(max_retries=0), stats=stats, stop=stop
        ),
        settings=WorkerSettings(
            owner="w1",
            tick_s=0.02,
            discovery_interval_s=0.2,
            lease_scan_interval_s=0.05,
            reader=ReaderSettings(poll_interval_min_s=0.05, poll_interval_max_s=0.1),
        ),
    )
    summary = worker.run(stop=threading.Event(), stop_when_idle=1.0)
    ids = [r.event_id for r in seen.records]
    assert len(ids) == len(set(ids)) == 2 * len(KEYS)  # every change once
    for key in KEYS:
        versions = [int(r.new_image["version"]) for r in seen.records if r.keys["pk"] == key]  # type: ignore[index]
        assert versions == [1, 2], (key, versions)
    leases = {lease.shard_id: lease for lease in store.list_leases()}
    finished = {shard for shard, lease in leases.items() if lease.finished}
    assert finished == {first["ShardId"], *children}  # closed shards read to their end
    (merged,) = [lease for lease in leases.values() if len(lease.parent_shard_ids) == 2]
    assert sorted(merged.parent_shard_ids) == sorted(children)
    assert summary.shards_finished == 3
    assert source.retention_s == 24 * 3600  # DescribeStreamSummary's RetentionPeriodHours


def test_source_kinesis_runs_routes_filters_and_consumers_as_a_dynamodb_stream_does(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """`[stream] source = "kinesis"` through build_app: the table gives the key schema, a
    Lambda-style filter on dynamodb.NewImage selects, and the route gets StreamRecords whose
    sequence numbers are the Kinesis ones."""
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    table, name = f"orders-{unique}", f"orders-kds-{unique}"
    create_table(dynamodb, table)
    kinesis.create_stream(StreamName=name, ShardCount=2)
    written = {}
    for i in range(8):
        keys = {"pk": {"S": f"TENANT#t{i % 2}"}, "sk": {"S": f"ORDER#{i}"}}
        image = {**keys, "status": {"S": "paid" if i % 2 else "new"}}
        written[f"ORDER#{i}"] = put_change(
            kinesis, name, kds_payload(keys, new_image=image, table=table), keys
        )
    config = kinesis_config(
        tmp_path,
        unique,
        name,
        """
[[routes]]
name = "paid"
consumer = "tests.integration.test_kinesis_source:unused"
filter = '{"dynamodb": {"NewImage": {"status": {"S": ["paid"]}}}}'
""",
        stream=f'table = "{table}"',
    )
    settings = load_settings(config, environ={"DSP_AWS__ENDPOINT_URL": endpoint})
    seen = Seen()
    (route_settings,) = settings.routes
    routes = [Route("paid", seen, compile_filters(route_settings.filters))]
    app = build_app(settings, routes=(routes, {"paid": RouteStats()}))
    try:
        assert app.stream.key_attributes == ("pk", "sk")
        app.worker.run(stop=threading.Event(), stop_when_idle=1.0)
    finally:
        app.close()
    got = {r.keys["sk"]: r.sequence_number for r in seen.records}
    assert got == {sk: seq for sk, seq in written.items() if int(sk.split("#")[1]) % 2}
    assert {r.table_name for r in seen.records} == {table}


def unused(records: Sequence[StreamRecord]) -> None:
    """The route's consumer spec in the file (the test hands build_app its own routes)."""


def test_replay_and_capture_work_on_the_kinesis_source(
    tmp_path: Path, endpoint: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dsp replay --from trim-horizon`, `dsp capture`, and a replay of the capture, on a
    table's Kinesis stream: the same changes each time, in order per key."""
    from processor.cli import main  # noqa: PLC0415
    from tests.integration import transforms  # noqa: PLC0415

    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    name = f"replay-kds-{unique}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    written = []
    for version in (1, 2):
        for key in KEYS:
            keys = {"pk": {"S": key}}
            image = {**keys, "version": {"N": str(version)}}
            written.append(put_change(kinesis, name, kds_payload(keys, new_image=image), keys))
    config = kinesis_config(
        tmp_path,
        unique,
        name,
        """
[[routes]]
name = "collect"
consumer = "tests.integration.transforms:collect"
""",
    )
    monkeypatch.setenv("DSP_AWS__ENDPOINT_URL", endpoint)

    def run(*args: str) -> list[tuple[str, int]]:
        transforms.COLLECTED.clear()
        assert main([*args, "--config", str(config)]) == 0
        got = [(r.keys["pk"], int(r.new_image["version"])) for b in transforms.COLLECTED for r in b]  # type: ignore[index]
        for key in KEYS:
            assert [v for k, v in got if k == key] in ([1, 2], [2], []), (key, got)
        return got

    everything = run("replay", "--from", "trim-horizon", "--idle-s", "1")
    assert sorted(everything) == sorted((k, v) for v in (1, 2) for k in KEYS)
    archive = tmp_path / "capture.jsonl"
    transforms.COLLECTED.clear()
    assert main(["capture", "--config", str(config), "--out", str(archive),
                 "--stop-when-idle", "1"]) == 0  # fmt: skip
    (captured,) = sorted(tmp_path.glob("capture-*.jsonl"))  # rotated as NAME-000001...
    assert sorted(run("replay", "--from-file", str(captured))) == sorted(everything)


def test_the_reorder_window_restores_key_order_and_drops_redeliveries_end_to_end(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """`[stream] reorder_window_ms` on moto Kinesis: a key's changes written late and twice
    reach the route once each, in creation order."""
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    name = f"reorder-kds-{unique}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    keys = {"pk": {"S": "k"}}

    def put(version: int, created_us: int, event_id: str) -> None:
        image = {**keys, "version": {"N": str(version)}}
        payload = kds_payload(keys, new_image=image, created_us=created_us, event_id=event_id)
        put_change(kinesis, name, payload, keys)

    put(2, 1_721_011_165_000_200, "e2")  # arrives before the change it follows
    put(1, 1_721_011_165_000_100, "e1")
    put(2, 1_721_011_165_000_200, "e2")  # delivered twice
    put(3, 1_721_011_165_000_300, "e3")
    config = kinesis_config(
        tmp_path,
        unique,
        name,
        """
[[routes]]
name = "seen"
consumer = "tests.integration.test_kinesis_source:unused"
""",
        stream="reorder_window_ms = 300",
    )
    settings = load_settings(config, environ={"DSP_AWS__ENDPOINT_URL": endpoint})
    seen = Seen()
    app = build_app(settings, routes=([Route("seen", seen)], {"seen": RouteStats()}))
    try:
        app.worker.run(stop=threading.Event(), stop_when_idle=1.5)
    finally:
        app.close()
    assert [int(r.new_image["version"]) for r in seen.records] == [1, 2, 3]  # type: ignore[index]


def test_replay_between_two_times_on_the_kinesis_source(
    tmp_path: Path, endpoint: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dsp replay --from TIME --to TIME` keeps the changes created in that span, by the KDS
    record's creation time (µs, compared at the second as on DynamoDB Streams)."""
    from processor.cli import main  # noqa: PLC0415
    from tests.integration import transforms  # noqa: PLC0415

    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    name = f"time-kds-{unique}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    start_us = 1_795_000_000_000_000  # 2026-11-18T11:06:40Z
    for i, key in enumerate(("before", "inside", "after")):
        keys = {"pk": {"S": key}}
        payload = kds_payload(keys, created_us=start_us + i * 10_000_000)  # 10 s apart
        put_change(kinesis, name, payload, keys)
    config = kinesis_config(
        tmp_path,
        unique,
        name,
        """
[[routes]]
name = "collect"
consumer = "tests.integration.transforms:collect"
""",
    )
    monkeypatch.setenv("DSP_AWS__ENDPOINT_URL", endpoint)
    transforms.COLLECTED.clear()
    argv = ["replay", "--config", str(config), "--idle-s", "1"]
    window = ["--from", "2026-11-18T11:06:45Z", "--to", "2026-11-18T11:06:55Z"]
    assert main([*argv, *window]) == 0
    assert [r.keys["pk"] for batch in transforms.COLLECTED for r in batch] == ["inside"]
