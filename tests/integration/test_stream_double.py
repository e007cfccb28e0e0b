"""The worker against the DynamoDB Streams double: lineage, pagination, expiry, trimming,
throttling. Leases live in the moto server; records come from the double over HTTP."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import structlog
from structlog.testing import capture_logs

from processor.app import build_app
from processor.runtime.worker import RunSummary
from processor.settings import load_settings
from processor.testing.stream_double import Scenario, ShardSpec, StreamDouble

from . import transforms


def run(
    tmp_path: Path,
    endpoint: str,
    double: StreamDouble,
    unique: str,
    *,
    extra: str = "",
    idle_s: float = 0.6,
) -> RunSummary:
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[aws]
max_attempts = 5
[stream]
arn = "{double.stream_arn}"
poll_interval_min_s = 0.02
poll_interval_max_s = 0.1
describe_rate_per_s = 5
{extra}
[checkpoints]
table = "leases-{unique}"
application = "double-{unique}"
[batch]
max_records = 7
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "collect"
consumer = "tests.integration.transforms:collect"
"""
    )
    settings = load_settings(
        config,
        environ={
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint,
        },
    )
    app = build_app(settings)
    summary = app.worker.run(stop=threading.Event(), stop_when_idle=idle_s)
    app.close()
    return summary


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    transforms.COLLECTED.clear()
    yield
    transforms.COLLECTED.clear()


def delivered() -> list[tuple[str, int]]:
    """(key, sequence) of every delivered record, in delivery order."""
    return [(r.keys["pk"], r.sequence_int) for batch in transforms.COLLECTED for r in batch]


def assert_once_in_key_order(scenario: Scenario) -> None:
    got = delivered()
    expected = {seq for _, _, seq in scenario.all_records()}
    seqs = [s for _, s in got]
    assert len(seqs) == len(set(seqs)), "a record was delivered twice"
    assert set(seqs) == expected, f"missing {len(expected - set(seqs))} records"
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, seq in got:
        per_key[key].append(seq)
    for key, seqs_of_key in per_key.items():
        assert seqs_of_key == sorted(seqs_of_key), f"key {key} out of order"


def test_three_generations_of_splits_every_record_once_in_key_order(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """Over a tree with splits and three generations, each record arrives once, in key order."""
    scenario = Scenario.tree(generations=3, fanout=2, records_per_shard=15, keys=6)
    with StreamDouble(scenario) as double:
        summary = run(tmp_path, endpoint, double, unique)
    assert len(scenario.shards) == 7
    assert summary.shards_finished == 3  # the open last generation keeps its leases
    assert_once_in_key_order(scenario)


def test_rollovers_read_each_generation_after_the_last(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """A chain of rollovers (fanout 1) over five generations is read in order."""
    scenario = Scenario.tree(generations=5, fanout=1, records_per_shard=9, keys=3)
    with StreamDouble(scenario) as double:
        run(tmp_path, endpoint, double, unique)
    assert_once_in_key_order(scenario)


@pytest.mark.slow
def test_250_shards_are_discovered_with_paced_describe_calls(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """A stream with 250 shards is fully discovered; DescribeStream stays within 5 calls/s."""
    scenario = Scenario.flat(250, records_per_shard=2, closed=True)
    with StreamDouble(scenario) as double:
        summary = run(tmp_path, endpoint, double, unique, extra="discovery_interval_s = 1")
        times = double.call_times["DescribeStream"]
    assert summary.shards_finished == 250
    assert_once_in_key_order(scenario)
    assert len(times) >= 3  # 250 shards take three pages of 100
    worst = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert worst <= 6, f"{worst} DescribeStream calls within one second"


def test_expiring_iterators_lose_and_repeat_nothing(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """With every iterator chain expiring after 2 GetRecords, all records arrive once, in order."""
    scenario = Scenario.tree(generations=3, fanout=2, records_per_shard=12, keys=5)
    scenario.expire_after_calls = 2
    with StreamDouble(scenario) as double, capture_logs() as logs:
        run(tmp_path, endpoint, double, unique, extra="get_records_limit = 3")
    assert_once_in_key_order(scenario)
    assert sum(1 for line in logs if line["event"] == "iterator_expired") >= 5


def test_throttling_every_third_call_backs_off_without_a_hot_loop(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """With every third GetRecords throttled, all arrives and the call count stays bounded."""
    scenario = Scenario.tree(generations=2, fanout=2, records_per_shard=20, keys=4, last_open=False)
    scenario.throttle_every = 3
    with StreamDouble(scenario) as double:
        run(tmp_path, endpoint, double, unique, extra="get_records_limit = 5", idle_s=0.3)
        calls = double.calls["GetRecords"]
    assert_once_in_key_order(scenario)
    pages = sum(-(-len(s.keys) // 5) for s in scenario.shards)
    # Each page needs one successful call; a throttle costs at most one extra (botocore's
    # standard mode retries LimitExceededException with backoff). A hot loop would be far more.
    assert calls <= pages * 2 + 5, f"{calls} GetRecords for {pages} pages"


def test_internal_errors_are_retried(tmp_path: Path, endpoint: str, unique: str) -> None:
    """5xx answers are retried (botocore, then our backoff); nothing is lost."""
    scenario = Scenario.tree(generations=2, fanout=2, records_per_shard=8, keys=3, last_open=False)
    scenario.fail_every = 4
    with StreamDouble(scenario) as double:
        run(tmp_path, endpoint, double, unique, extra="get_records_limit = 4")
    assert_once_in_key_order(scenario)


def trimmed_scenario() -> Scenario:
    return Scenario.tree(generations=1, fanout=1, records_per_shard=5, keys=2)


def test_trimmed_data_with_fail_stops_the_shard_naming_the_lost_range(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """on_trimmed = "fail": the shard stops with an error naming it and the lost range."""
    scenario = trimmed_scenario()
    shard = scenario.shards[0]
    with StreamDouble(scenario) as double:
        run(tmp_path, endpoint, double, unique)  # reads records 0..4, checkpoints seq(4)
        double.append(shard.shard_id, ["k0"] * 5)  # records 5..9
        double.trim(shard.shard_id, 8)  # 5, 6, 7 are gone before anyone read them
        transforms.COLLECTED.clear()
        with capture_logs() as logs:
            summary = run(tmp_path, endpoint, double, unique, extra='on_trimmed = "fail"')
    assert delivered() == []
    assert summary.reader_failures == 1
    (error,) = [line for line in logs if line["event"] == "shard_stopped_trimmed"]
    assert shard.shard_id in error["error"]
    assert f"after {shard.sequence(4)} up to before {shard.sequence(8)}" in error["error"]


def test_trimmed_data_with_skip_reports_the_exact_lost_range(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """on_trimmed = "skip": restarts at the trim horizon, logs the exact range, counts it."""
    scenario = trimmed_scenario()
    shard = scenario.shards[0]
    with StreamDouble(scenario) as double:
        run(tmp_path, endpoint, double, unique)
        double.append(shard.shard_id, ["k0"] * 5)
        double.trim(shard.shard_id, 8)
        transforms.COLLECTED.clear()
        with capture_logs() as logs:
            summary = run(tmp_path, endpoint, double, unique, extra='on_trimmed = "skip"')
    assert [seq for _, seq in delivered()] == [shard.sequence(8), shard.sequence(9)]
    assert summary.trimmed_skips == [
        (shard.shard_id, str(shard.sequence(4)), str(shard.sequence(8)))
    ]
    (error,) = [line for line in logs if line["event"] == "trimmed_data_skipped"]
    assert error["log_level"] == "error"
    assert error["lost_after"] == str(shard.sequence(4))
    assert error["lost_before"] == str(shard.sequence(8))


def test_closed_shards_are_never_read_again(tmp_path: Path, endpoint: str, unique: str) -> None:
    """A second run over a stream whose shards are all finished reads nothing."""
    scenario = Scenario.tree(generations=2, fanout=2, records_per_shard=5, keys=3, last_open=False)
    with StreamDouble(scenario) as double:
        run(tmp_path, endpoint, double, unique)
        first = double.calls["GetRecords"]
        transforms.COLLECTED.clear()
        run(tmp_path, endpoint, double, unique)
        assert double.calls["GetRecords"] == first
    assert delivered() == []


_ = (Any, structlog)


def test_two_reader_threads_read_every_generation_under_throttling(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """`reader_threads = 2` on three generations of splits and throttled GetRecords (the
    leases in moto, the app built from its file): every record once and in key order, and
    never more than two reader threads, though up to 4 shards are owned at once."""
    scenario = Scenario.tree(generations=3, fanout=2, records_per_shard=15, keys=6)
    scenario.throttle_every = 3
    most: list[int] = [0]
    running = threading.Event()

    def sample() -> None:
        while not running.wait(0.005):
            readers = [t for t in threading.enumerate() if t.name.startswith("dsp-reader_")]
            most[0] = max(most[0], len(readers))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with StreamDouble(scenario) as double:
        summary = run(
            tmp_path,
            endpoint,
            double,
            unique,
            extra="reader_threads = 2\nget_records_limit = 4",
        )
    running.set()
    sampler.join(5)
    assert_once_in_key_order(scenario)
    assert summary.shards_finished == 3  # the root and its two children; 4 stay open
    assert 1 <= most[0] <= 2


def test_served_changes_carry_the_images_and_key_schema_they_were_given(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """A shard's ``changes`` replace the made-up change of each record (the whole-process
    benchmark serves real items this way); the stream's key schema is the scenario's."""
    image = {
        "pk": {"S": "TENANT#1"},
        "sk": {"S": "ORDER#7"},
        "lines": {"L": [{"M": {"qty": {"N": "2"}}}]},
        "tags": {"SS": ["a", "b"]},
    }
    change = {
        "eventName": "INSERT",
        "Keys": {"pk": image["pk"], "sk": image["sk"]},
        "NewImage": image,
        "StreamViewType": "NEW_IMAGE",
    }
    shard = ShardSpec("shardId-00000000000000000001-00000001", None, ["TENANT#1", "k"], False)
    shard.changes = [change]  # the second record keeps the made-up change
    scenario = Scenario([shard], key_attributes=("pk", "sk"))
    with StreamDouble(scenario) as double:
        run(tmp_path, endpoint, double, unique)
        streams = boto3.client(
            "dynamodbstreams", endpoint_url=double.endpoint, region_name="us-east-1"
        )
        schema = streams.describe_stream(StreamArn=double.stream_arn)["StreamDescription"]
    assert schema["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    first, second = [r for batch in transforms.COLLECTED for r in batch]
    assert first.event_name.value == "INSERT"
    assert first.keys == {"pk": "TENANT#1", "sk": "ORDER#7"}
    assert first.new_image == {
        "pk": "TENANT#1",
        "sk": "ORDER#7",
        "lines": [{"qty": 2}],
        "tags": {"a", "b"},
    }
    assert second.keys == {"pk": "k"}
    assert second.event_name.value == "MODIFY"
