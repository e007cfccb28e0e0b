"""`dsp` on a Kinesis Data Streams for DynamoDB stream that splits and merges while it runs.

Kinesis is the Kinesis double (`processor.testing.KinesisDouble`: Kinesis' wire API to the
real boto3 client, resharding as Kinesis documents it; moto's puts keep landing in a split
parent). The lease table, the table and the projection are on the suite's DynamoDB (moto, or
DynamoDB Local under `make test-dynamodb-local`). Changes are written through PutRecord with
redeliveries and out-of-order arrivals injected, as AWS warns KDS delivers them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from processor.app import App, build_app
from processor.core.records import StreamRecord
from processor.settings import load_settings
from processor.testing import KinesisDouble, create_table, kds_payload, put_change, scan_all
from tests.integration import transforms
from tests.integration.helpers import kinesis_config

KEYS = [f"k{i:02d}" for i in range(12)]
BASE_US = 1_795_000_000_000_000


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


COLLECT = """
[[routes]]
name = "collect"
consumer = "tests.integration.transforms:collect"
"""


def client(double: KinesisDouble) -> Any:
    return boto3.client(
        "kinesis", endpoint_url=double.endpoint, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
    )  # fmt: skip


def config_for(
    tmp_path: Path, unique: str, name: str, table: str, *, stream: str = "", routes: str = COLLECT
) -> Path:
    """dsp.toml for the Kinesis stream ``name`` of ``table``."""
    return kinesis_config(tmp_path, unique, name, routes, stream=f'table = "{table}"\n{stream}')


def environ_for(endpoint: str, double: KinesisDouble) -> dict[str, str]:
    """DynamoDB (leases, tables) on the suite's endpoint; Kinesis on the double."""
    return {"DSP_AWS__ENDPOINT_URL": endpoint, "DSP_AWS__KINESIS_ENDPOINT_URL": double.endpoint}


@contextmanager
def running(config: Path, environ: dict[str, str]) -> Iterator[App]:
    """`dsp run` in a thread for the duration of the block."""
    app = build_app(load_settings(config, environ=environ))
    stop = threading.Event()
    runner = threading.Thread(target=lambda: app.worker.run(stop=stop), daemon=True)
    runner.start()
    try:
        yield app
    finally:
        stop.set()
        runner.join(timeout=30)
        app.close()


def collected() -> list[StreamRecord]:
    return [r for batch in list(transforms.COLLECTED) for r in batch]


class Writer:
    """Writes version v of every key as DynamoDB would, remembering each change's eventID."""

    def __init__(self, kinesis: Any, stream: str, table: str) -> None:
        self.kinesis, self.stream, self.table = kinesis, stream, table
        self.event_ids: dict[tuple[str, int], str] = {}
        self.puts = 0

    def payload(self, key: str, version: int) -> tuple[bytes, dict[str, Any]]:
        keys = {"pk": {"S": key}}
        image = {**keys, "version": {"N": str(version)}}
        event_id = f"{key}-v{version}"
        self.event_ids[(key, version)] = event_id
        created = BASE_US + version * 1_000_000 + int(key[1:])  # µs: later versions later
        data = kds_payload(
            keys, event_name="MODIFY", new_image=image, created_us=created,
            event_id=event_id, table=self.table,
        )  # fmt: skip
        return data, keys

    def put(self, key: str, version: int, *, twice: bool = False) -> None:
        data, keys = self.payload(key, version)
        for _ in range(2 if twice else 1):
            put_change(self.kinesis, self.stream, data, keys)
            self.puts += 1

    def generation(self, version: int, *, redeliver: set[str], swap: set[str]) -> None:
        """Version ``version`` of every key; keys in ``swap`` get ``version + 1`` first (it
        arrives before the change it follows), keys in ``redeliver`` get a change twice."""
        for key in KEYS:
            if key in swap:
                self.put(key, version + 1)
                self.put(key, version, twice=key in redeliver)
            else:
                self.put(key, version, twice=key in redeliver)
                self.put(key, version + 1)


def test_a_split_and_a_merge_during_the_run_lose_nothing_and_keep_key_order(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Two shards; a split while reading, then a merge of the split's children. With a reorder
    window: each change once (redeliveries dropped), each key's versions in order, every
    parent read before its children, the versioned projection ends at the newest image."""
    table, projection, name = f"orders-{unique}", f"mirror-{unique}", f"orders-kds-{unique}"
    create_table(dynamodb, table, keys=("pk",))
    create_table(dynamodb, projection, keys=("pk",), stream_view=None)
    with KinesisDouble(reads_per_second=5) as double:  # Kinesis' per-shard read limit
        double.create_stream(name, shards=2)
        kinesis = client(double)
        mirror = f"""
[[routes]]
name = "mirror"
consumer = "batch_write"
[routes.options]
table = "{projection}"
versioned = true
"""
        config = config_for(
            tmp_path,
            unique,
            name,
            table,
            stream="reorder_window_ms = 1500",
            routes=COLLECT + mirror,
        )
        transforms.COLLECTED.clear()
        writer = Writer(kinesis, name, table)
        with running(config, environ_for(endpoint, double)) as app:
            writer.generation(1, redeliver={"k00", "k05"}, swap={"k03"})
            wait_for(lambda: len(collected()) >= 2 * len(KEYS))
            first = double.open_shards(name)[0].shard_id
            kinesis.split_shard(
                StreamName=name, ShardToSplit=first,
                NewStartingHashKey=str(2**126),  # the middle of shard 0 (the lower half)
            )  # fmt: skip
            writer.generation(3, redeliver={"k01", "k07"}, swap={"k02", "k09"})
            wait_for(lambda: len(collected()) >= 4 * len(KEYS))
            low, high = (s.shard_id for s in double.shards(name) if s.parent == first)
            kinesis.merge_shards(StreamName=name, ShardToMerge=low, AdjacentShardToMerge=high)
            writer.generation(5, redeliver={"k04", "k10"}, swap={"k06", "k11"})
            wait_for(lambda: len(collected()) >= 6 * len(KEYS))
            time.sleep(1.7)  # a late redelivery would show up within the reorder window
        shards = {s.shard_id: s for s in double.shards(name)}
        throttled = double.throttled

    records = collected()
    assert writer.puts == 6 * len(KEYS) + 6  # six redeliveries went in
    # each change exactly once: the window covered every redelivery
    assert sorted(r.event_id for r in records) == sorted(writer.event_ids.values())
    for key in KEYS:  # each key's versions in creation order, across shards
        versions = [int(r.new_image["version"]) for r in records if r.keys["pk"] == key]  # type: ignore[index]
        assert versions == [1, 2, 3, 4, 5, 6], (key, versions)
    # parents before children: every record of a parent was handed over before its child's
    position: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        position.setdefault(str(record.shard_id), []).append(index)
    resharded = [s for s in shards.values() if s.parent]
    assert len(resharded) == 3  # two children of the split, one child of the merge
    assert any(s.adjacent_parent for s in resharded)
    for child in resharded:
        for parent in (child.parent, child.adjacent_parent):
            if parent and parent in position and child.shard_id in position:
                assert max(position[parent]) < min(position[child.shard_id]), (parent, child)
    assert all(position.get(s.shard_id) for s in resharded if s.adjacent_parent)  # merge read
    # the versioned projection ends at each key's newest image
    newest = {i["pk"]["S"]: int(i["version"]["N"]) for i in scan_all(dynamodb, projection)}
    assert newest == dict.fromkeys(KEYS, 6)
    assert throttled == 0  # the reader kept to 5 reads/s per shard
    closed = [s for s in shards.values() if not s.open]
    assert len(closed) == 3
    assert app.worker.summary.shards_finished == len(closed)  # each read to its end


@pytest.fixture(autouse=True)
def _no_leftover_batches() -> None:
    transforms.COLLECTED.clear()


def test_a_backlog_is_read_within_kinesis_five_reads_per_second_per_shard(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Catching up on a backlog, full pages come back to back; the reader still calls
    GetRecords at most 5 times a second per shard (Kinesis' limit; each excess call is a
    ProvisionedThroughputExceededException and a retry)."""
    table, name = f"orders-{unique}", f"backlog-kds-{unique}"
    create_table(dynamodb, table, keys=("pk",))
    with KinesisDouble(reads_per_second=5) as double:
        double.create_stream(name, shards=1)
        for i in range(1500):
            keys = {"pk": {"S": f"k{i}"}}
            double.put(name, f"k{i}", kds_payload(keys, table=table))
        config = config_for(tmp_path, unique, name, table, stream="get_records_limit = 100")
        with running(config, environ_for(endpoint, double)):
            wait_for(lambda: len(collected()) >= 1500)
        assert double.calls["GetRecords"] >= 15
        assert double.throttled == 0


def test_a_replay_from_a_time_starts_at_that_time_with_at_timestamp(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dsp replay --from TIME --to TIME` on Kinesis asks for AT_TIMESTAMP iterators (Kinesis
    keeps up to a year: reading from the trim horizon to find an hour would read the year).
    Changes that arrived hours before the start are never read."""
    from processor.cli import main  # noqa: PLC0415

    table, name = f"orders-{unique}", f"time-kds-{unique}"
    create_table(dynamodb, table, keys=("pk",))
    now = [1_795_000_000.0]  # 2026-11-18T11:06:40Z
    with KinesisDouble(clock=lambda: now[0]) as double:
        double.create_stream(name, shards=1, retention_hours=168)
        sequence = {}
        for key, at in (("old", -7200.0), ("before", -5.0), ("inside", 10.0), ("after", 30.0)):
            now[0] = 1_795_000_000.0 + at
            keys = {"pk": {"S": key}}
            created = int(now[0] * 1_000_000) - 20_000  # made 20 ms before it arrived
            sequence[key] = double.put(name, key, kds_payload(keys, created_us=created))[1]
        config = config_for(tmp_path, unique, name, table)
        for key, value in environ_for(endpoint, double).items():
            monkeypatch.setenv(key, value)
        argv = ["replay", "--config", str(config), "--idle-s", "1"]
        window = ["--from", "2026-11-18T11:06:45Z", "--to", "2026-11-18T11:06:55Z"]
        assert main([*argv, *window]) == 0
        served = list(double.served)
    assert [r.keys["pk"] for r in collected()] == ["inside"]
    assert sequence["old"] not in served  # two hours earlier: never read
    assert sequence["inside"] in served


def test_the_readers_lag_is_kinesis_millis_behind_latest() -> None:
    """The lag (dsp_iterator_age_seconds, multilang's millisBehindLatest) on Kinesis is what
    GetRecords says, not now minus the creation time: changes made just now that sat an hour
    behind a backlog are an hour behind."""
    from processor.leases.memory import MemoryLeaseStore  # noqa: PLC0415
    from processor.runtime.reader import ReaderSettings, ShardReader  # noqa: PLC0415
    from processor.runtime.targets import PipelineTarget, ShardContext  # noqa: PLC0415
    from processor.sources.kinesis import KinesisSource  # noqa: PLC0415

    now = [1_795_000_000.0]
    lags: list[float] = []

    class Recording(PipelineTarget):
        def process(self, reader: ShardContext, batch: list[StreamRecord]) -> None:
            lags.append(reader.lag_s)
            reader.commit(batch[-1].sequence_number)

    with KinesisDouble(clock=lambda: now[0]) as double:
        arn = double.create_stream("lag", shards=1)
        for i, arrived in enumerate((-3600.0, -1800.0, 0.0)):
            now[0] = 1_795_000_000.0 + arrived
            keys = {"pk": {"S": f"k{i}"}}
            created_us = int(time.time() * 1_000_000)  # creation times say "just now"
            double.put("lag", f"k{i}", kds_payload(keys, created_us=created_us))
        source = KinesisSource(client(double))
        store = MemoryLeaseStore()
        (shard,) = source.describe(arn).shards
        store.create_missing([shard], set())
        lease = store.take(store.list_leases()[0], "w1")
        assert lease is not None
        stop = threading.Event()
        reader = ShardReader(
            adapter=source, stream_arn=arn, lease=lease, initial_position="TRIM_HORIZON",
            store=store, target=Recording(None), stop=stop,  # type: ignore[arg-type]
            settings=ReaderSettings(get_records_limit=1, max_records=1, poll_interval_min_s=0.01),
        )  # fmt: skip
        runner = threading.Thread(target=reader.run, daemon=True)
        runner.start()
        wait_for(lambda: len(lags) >= 3)
        stop.set()
        runner.join(timeout=10)
    # each page: now minus the arrival of the first record still unread after it
    assert lags == [1800.0, 0.0, 0.0]


def test_expired_iterators_and_throttled_reads_lose_nothing_on_kinesis(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Iterators that expire after two uses and every third GetRecords throttled
    (ProvisionedThroughputExceededException): each change still arrives once, in order."""
    table, name = f"orders-{unique}", f"flaky-kds-{unique}"
    create_table(dynamodb, table, keys=("pk",))
    with KinesisDouble(expire_after_calls=2, throttle_every=3) as double:
        double.create_stream(name, shards=2)
        for version in range(1, 6):
            for key in KEYS:
                keys = {"pk": {"S": key}}
                image = {**keys, "version": {"N": str(version)}}
                data = kds_payload(keys, event_name="MODIFY", new_image=image, table=table)
                double.put(name, json.dumps(keys, sort_keys=True), data)
        config = config_for(tmp_path, unique, name, table, stream="get_records_limit = 7")
        environ = environ_for(endpoint, double)
        app = build_app(load_settings(config, environ=environ))
        try:
            app.worker.run(stop=threading.Event(), stop_when_idle=1.0)
        finally:
            app.close()
        assert double.throttled > 0
        assert double.calls["GetShardIterator"] > 2 * 2  # fresh iterators after expiry
    records = collected()
    assert len(records) == 5 * len(KEYS)
    for key in KEYS:
        versions = [int(r.new_image["version"]) for r in records if r.keys["pk"] == key]  # type: ignore[index]
        assert versions == [1, 2, 3, 4, 5], (key, versions)


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_a_checkpoint_older_than_the_retention_is_not_skipped_silently(policy: str) -> None:
    """Kinesis has no TrimmedDataAccessException: a start past the trim horizon is an
    InvalidArgumentException on StartingSequenceNumber. It becomes TrimmedDataError, so
    `on_trimmed` applies as on DynamoDB Streams: stop the shard, or go on from the horizon
    with the lost range logged."""
    from processor.leases.memory import MemoryLeaseStore  # noqa: PLC0415
    from processor.runtime.reader import ReaderSettings, ShardReader  # noqa: PLC0415
    from processor.runtime.targets import (  # noqa: PLC0415
        PipelineTarget,
        ReaderOutcome,
        ShardContext,
    )
    from processor.sources.kinesis import KinesisSource  # noqa: PLC0415

    seen: list[str] = []

    class Recording(PipelineTarget):
        def process(self, reader: ShardContext, batch: list[StreamRecord]) -> None:
            seen.extend(str(r.keys["pk"]) for r in batch)
            reader.commit(batch[-1].sequence_number)

    with KinesisDouble() as double:
        arn = double.create_stream("trim", shards=1, retention_hours=48)
        sequences = [
            double.put("trim", f"k{i}", kds_payload({"pk": {"S": f"k{i}"}}))[1] for i in range(8)
        ]
        (shard,) = double.shards("trim")
        double.trim("trim", shard.shard_id, 5)  # k0..k4 aged out
        source = KinesisSource(client(double))
        store = MemoryLeaseStore()
        (described,) = source.describe(arn).shards
        store.create_missing([described], set())
        lease = store.take(store.list_leases()[0], "w1")
        assert lease is not None
        lease = store.checkpoint(lease, sequences[1], finished=False)  # handled up to k1
        stop = threading.Event()
        reader = ShardReader(
            adapter=source, stream_arn=arn, lease=lease, initial_position="TRIM_HORIZON",
            store=store, target=Recording(None), stop=stop,  # type: ignore[arg-type]
            settings=ReaderSettings(on_trimmed=policy, poll_interval_min_s=0.01),
        )  # fmt: skip
        if policy == "fail":
            assert reader.run() is ReaderOutcome.FAILED
            assert "trimmed" in (reader.failure or "")
            assert "48 h retention" in (reader.failure or "")
            assert seen == []
            return
        runner = threading.Thread(target=reader.run, daemon=True)
        runner.start()
        wait_for(lambda: len(seen) >= 3)
        stop.set()
        runner.join(timeout=10)
    assert seen == ["k5", "k6", "k7"]
    assert reader.trimmed_skips == [(sequences[1], sequences[5])]


def test_months_of_splits_and_merges_keep_the_lease_table_to_the_live_stream(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """The Kinesis double reshards on its clock every 0.8 s (splits, then merges back: two
    parents), and a shard closed 3 s ago leaves ListShards: over 16 reshards every change is
    delivered once in key order, and cleanup keeps the lease table near what the stream lists
    (without it, every shard ever created stays)."""
    table, name = f"orders-{unique}", f"orders-kds-{unique}"
    create_table(dynamodb, table, keys=("pk",))
    with KinesisDouble() as double:
        double.create_stream(name, shards=2)
        double.reshard_every(name, 0.8, retention_s=3.0)
        kinesis = client(double)
        writer = Writer(kinesis, name, table)
        config = config_for(tmp_path, unique, name, table, stream="discovery_interval_s = 1")
        text = config.read_text().replace(
            "[checkpoints]\n",
            "[checkpoints]\nlease_timeout_s = 4\nrenew_interval_s = 1\n"
            "lease_scan_interval_s = 0.3\ncleanup_interval_s = 0.5\n",
        )
        config.write_text(text)
        with running(config, environ_for(endpoint, double)) as app:
            version = 0
            while double.generations(name) < 16:
                version += 1
                for key in KEYS:
                    writer.put(key, version)
                time.sleep(0.1)
            wanted = {(key, v) for key in KEYS for v in range(1, version + 1)}

            def delivered() -> int:
                return len({(r.keys["pk"], (r.new_image or {})["version"]) for r in collected()})

            wait_for(lambda: delivered() >= len(wanted))
            time.sleep(2.0)  # more cleanup passes
            listed = len(double.shards(name))
            leases = app.worker.state()["lease_scan_items"]
            created = len(double.shards(name)) + len(double.departed(name))
    order: dict[str, list[int]] = {}
    for record in collected():
        order.setdefault(record.keys["pk"], []).append(int((record.new_image or {})["version"]))
    for key, versions in order.items():
        assert versions == sorted(versions), key
        assert versions == list(range(1, version + 1)), key
    assert leases <= 3 * listed + 6, (leases, listed, created)
    assert created > 2 * leases
