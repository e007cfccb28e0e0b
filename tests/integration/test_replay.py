"""`dsp replay` and `dsp capture` against the stream double (records) and moto (leases)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processor.app import build_app
from processor.cli import main
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.settings import load_settings
from processor.testing import WebhookReceiver
from processor.testing.stream_double import Scenario, StreamDouble

from . import transforms

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/double/stream/2026-01-01T00:00:00.000"


@pytest.fixture
def scenario() -> Scenario:
    return Scenario.tree(generations=3, fanout=2, records_per_shard=10, keys=6, last_open=False)


@pytest.fixture
def double(
    scenario: Scenario, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StreamDouble]:
    with StreamDouble(scenario) as running:
        monkeypatch.setenv("DSP_AWS__ENDPOINT_URL", endpoint)
        monkeypatch.setenv("DSP_AWS__STREAMS_ENDPOINT_URL", running.endpoint)
        transforms.COLLECTED.clear()
        transforms.OTHER.clear()
        yield running


def config(tmp_path: Path, unique: str, routes: str, extra: str = "") -> Path:
    path = tmp_path / "dsp.toml"
    path.write_text(
        f"""
[stream]
arn = "{ARN}"
poll_interval_min_s = 0.02
poll_interval_max_s = 0.1
[checkpoints]
table = "leases-{unique}"
application = "live-{unique}"
[tenancy]
attribute = "pk"
pattern = "^(?P<tenant>k[0-9]+)$"
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
{extra}
{routes}
"""
    )
    return path


COLLECT = """
[[routes]]
name = "collect"
consumer = "tests.integration.transforms:collect"
[[routes]]
name = "other"
consumer = "tests.integration.transforms:collect_other"
"""


def delivered(batches: list[list[Any]] | None = None) -> list[tuple[str, int]]:
    return [(r.keys["pk"], r.sequence_int) for b in (batches or transforms.COLLECTED) for r in b]


def assert_key_order(got: list[tuple[str, int]]) -> None:
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, seq in got:
        per_key[key].append(seq)
    for key, seqs in per_key.items():
        assert seqs == sorted(seqs), f"{key} out of order"


def live_leases(endpoint: str, unique: str) -> list[Any]:
    settings = load_settings(
        None,
        environ={
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "DSP_STREAM__ARN": ARN,
            "DSP_CHECKPOINTS__APPLICATION": f"live-{unique}",
            "DSP_CHECKPOINTS__TABLE": f"leases-{unique}",
            "DSP_ROUTES": '[{"name": "x", "consumer": "a.b:c"}]',
        },
    )
    import boto3  # noqa: PLC0415

    store = DynamoDBLeaseStore(
        boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1"),
        table=settings.checkpoints.table,
        application=settings.checkpoints.application,
        stream_arn=ARN,
    )
    return sorted(store.list_leases(), key=lambda lease: lease.shard_id)


def run_live(path: Path) -> None:
    app = build_app(load_settings(path))
    app.worker.run(stop=threading.Event(), stop_when_idle=0.5)
    app.close()


def test_replay_from_a_sequence_number_delivers_exactly_the_range_and_leaves_live_checkpoints(
    tmp_path: Path,
    endpoint: str,
    double: StreamDouble,
    scenario: Scenario,
    unique: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Records from the sequence number on, across the shard tree, in key order; the live
    worker's checkpoints do not move."""
    path = config(tmp_path, unique, COLLECT)
    run_live(path)
    before = live_leases(endpoint, unique)
    transforms.COLLECTED.clear()
    start = scenario.shards[1].sequence(4)
    assert (
        main(
            [
                "replay",
                "--config",
                str(path),
                "--from",
                str(start),
                "--route",
                "collect",
                "--idle-s",
                "0.5",
            ]
        )
        == 0
    )
    got = delivered()
    expected = {seq for _, _, seq in scenario.all_records() if seq >= start}
    assert {s for _, s in got} == expected
    assert len(got) == len(expected)
    assert_key_order(got)
    assert live_leases(endpoint, unique) == before
    assert "collect" in capsys.readouterr().out


def test_replay_between_two_times(
    tmp_path: Path, double: StreamDouble, scenario: Scenario, unique: str
) -> None:
    """--from/--to times select by ApproximateCreationDateTime (whole seconds), in key order."""
    path = config(tmp_path, unique, COLLECT)
    t0 = datetime.fromtimestamp(scenario.created + 3, tz=UTC).isoformat()
    t1 = datetime.fromtimestamp(scenario.created + 6, tz=UTC).isoformat()
    assert (
        main(
            [
                "replay",
                "--config",
                str(path),
                "--from",
                t0,
                "--to",
                t1,
                "--route",
                "collect",
                "--idle-s",
                "0.5",
            ]
        )
        == 0
    )
    got = delivered()
    expected = {
        shard.sequence(i)
        for shard in scenario.shards
        for i in range(len(shard.keys))
        if 3 <= i <= 6
    }
    assert {s for _, s in got} == expected
    assert_key_order(got)


def test_dry_run_delivers_nothing_and_counts(
    tmp_path: Path, double: StreamDouble, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run prints what would go per route, tenant and event, and delivers nothing."""
    path = config(tmp_path, unique, COLLECT)
    assert (
        main(
            [
                "replay",
                "--config",
                str(path),
                "--from",
                "trim-horizon",
                "--dry-run",
                "--idle-s",
                "0.5",
            ]
        )
        == 0
    )
    assert transforms.COLLECTED == []
    assert transforms.OTHER == []
    out = capsys.readouterr().out
    assert "route" in out
    assert "tenant" in out
    assert "MODIFY" in out
    assert any(line.startswith("collect") and " k0 " in line for line in out.splitlines())


def test_route_and_tenant_selection(tmp_path: Path, double: StreamDouble, unique: str) -> None:
    """--route runs only that route; --tenant delivers only that tenant's records."""
    path = config(tmp_path, unique, COLLECT)
    assert (
        main(
            [
                "replay",
                "--config",
                str(path),
                "--from",
                "trim-horizon",
                "--route",
                "other",
                "--tenant",
                "k0",
                "--tenant",
                "k3",
                "--idle-s",
                "0.5",
            ]
        )
        == 0
    )
    assert transforms.COLLECTED == []
    keys = {key for key, _ in delivered(transforms.OTHER)}
    assert keys == {"k0", "k3"}


def test_interrupted_replay_resumes_without_gaps(
    tmp_path: Path,
    endpoint: str,
    double: StreamDouble,
    scenario: Scenario,
    receiver: WebhookReceiver,
    unique: str,
) -> None:
    """SIGTERM mid-replay, then the same command with --resume: every record delivered."""
    path = config(
        tmp_path,
        unique,
        f"""
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/replay"
""",
    )
    env = {**os.environ, "DSP_LOGGING__LEVEL": "WARNING"}
    command = [
        sys.executable,
        "-m",
        "processor.cli",
        "replay",
        "--config",
        str(path),
        "--from",
        "trim-horizon",
        "--rate",
        "25",
        "--idle-s",
        "0.5",
    ]
    first = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert receiver.wait_for(15, timeout_s=90, path="/replay")
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=30)
    assert first.returncode == 0
    assert "--resume" in out
    after_first = len(receiver.received("/replay"))
    total = sum(len(s.keys) for s in scenario.shards)
    assert after_first < total
    second = subprocess.run(
        [*command[:-4], "--resume", "--idle-s", "0.5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 0, second.stderr[-1500:]
    seqs = [int(r.json()["sequence_number"]) for r in receiver.received("/replay")]
    assert set(seqs) == {seq for _, _, seq in scenario.all_records()}
    duplicates = len(seqs) - len(set(seqs))
    assert duplicates <= 10  # at most the batches in flight at the interruption
    print(f"resume: {after_first} before SIGTERM, {len(seqs)} in all, {duplicates} repeated")


def test_capture_then_replay_from_file_reproduces_the_live_deliveries(
    tmp_path: Path, double: StreamDouble, receiver: WebhookReceiver, unique: str
) -> None:
    """The archive written by `dsp capture` replays to exactly what the live run delivered."""
    hook = f"""
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/PATH"
"""
    live = config(tmp_path, unique, hook.replace("PATH", "live"))
    run_live(live)
    archive = tmp_path / "archive" / "stream.jsonl.gz"
    assert (
        main(["capture", "--config", str(live), "--out", str(archive), "--stop-when-idle", "0.5"])
        == 0
    )
    files = sorted(archive.parent.glob("stream-*.jsonl.gz"))
    assert files
    replayed = config(tmp_path, unique, hook.replace("PATH", "file"))
    assert main(["replay", "--config", str(replayed), "--from-file", *map(str, files)]) == 0
    live_bodies = sorted(r.body for r in receiver.received("/live"))
    file_bodies = sorted(r.body for r in receiver.received("/file"))
    assert live_bodies == file_bodies
    assert len(live_bodies) == 70
    assert {r.headers["Idempotency-Key"] for r in receiver.received("/file")} == {
        json.loads(b)["event_id"] for b in live_bodies
    }


def test_replay_exits_3_when_something_was_dead_lettered(
    tmp_path: Path, double: StreamDouble, receiver: WebhookReceiver, unique: str
) -> None:
    """A replay that had to dead-letter records ends with exit status 3."""
    receiver.script("/bad", [400])
    path = config(
        tmp_path,
        unique,
        f"""
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/bad"
""",
    )
    assert (
        main(
            [
                "replay",
                "--config",
                str(path),
                "--from",
                "trim-horizon",
                "--shard",
                "shardId-00000000000000000000-00000000",
                "--idle-s",
                "0.5",
            ]
        )
        == 3
    )


def test_replay_of_a_moto_table_stream(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the moto server's own stream: a time-bounded replay of a real table."""
    from processor.testing import create_table  # noqa: PLC0415

    monkeypatch.setenv("DSP_AWS__ENDPOINT_URL", endpoint)
    monkeypatch.delenv("DSP_AWS__STREAMS_ENDPOINT_URL", raising=False)
    transforms.COLLECTED.clear()
    table = f"replay-{unique}"
    create_table(dynamodb, table)
    for i in range(20):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k{i % 4}"}, "sk": {"S": f"{i:03d}"}})
    path = tmp_path / "dsp.toml"
    path.write_text(
        f"""
[stream]
table = "{table}"
[checkpoints]
table = "leases-{unique}"
application = "moto-{unique}"
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "collect"
consumer = "tests.integration.transforms:collect"
"""
    )
    assert main(["replay", "--config", str(path), "--from", "trim-horizon", "--idle-s", "0.5"]) == 0
    got = [(r.keys["pk"], r.keys["sk"]) for b in transforms.COLLECTED for r in b]
    assert sorted(got) == sorted((f"k{i % 4}", f"{i:03d}") for i in range(20))
