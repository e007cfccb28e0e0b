"""`dsp leases prune` and `dsp status` on a lease table an older version filled (issue 28).

The stream double lists a rolled-over lineage; the lease table (in the moto server) also
holds finished leases of shards long gone, finished parents whose children started, and an
unfinished lease of a shard that left the stream (trimmed unread)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.leases.model import Lease
from processor.testing.stream_double import Scenario, ShardSpec, StreamDouble
from tests.system.cli import dsp_with

pytestmark = pytest.mark.system


def scenario() -> Scenario:
    # in the stream: p (closed) -> c (closed) -> g (open), and an unrelated open shard n
    return Scenario(
        [
            ShardSpec("shardId-0002-p", None, ["a"], True),
            ShardSpec("shardId-0003-c", "shardId-0002-p", ["a"], True),
            ShardSpec("shardId-0004-g", "shardId-0003-c", ["a"], False),
            ShardSpec("shardId-0005-n", None, ["b"], False),
        ]
    )


def fill(store: DynamoDBLeaseStore) -> None:
    old = [
        Lease(f"shardId-0001-old{i}", None, 3, 1.0, "9", True) for i in range(5)
    ]  # finished, gone from the stream
    old.append(Lease("shardId-0001-lost", None, 2, 1.0, "4", False))  # unfinished, gone
    old.append(Lease("shardId-0002-p", None, 4, 1.0, "20", True))  # its child started
    old.append(Lease("shardId-0003-c", None, 4, 1.0, "30", False, parent_shard_id="shardId-0002-p"))
    old.append(Lease("shardId-0005-n", None, 1, 1.0, None, False))
    for lease in old:
        assert store.import_lease(lease)


def ids(store: DynamoDBLeaseStore) -> set[str]:
    return {lease.shard_id for lease in store.list_leases()}


@pytest.mark.parametrize("on_trimmed", ["fail", "skip"])
def test_prune_is_a_dry_run_until_apply_and_then_keeps_only_what_lineage_needs(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str, on_trimmed: str
) -> None:
    with StreamDouble(scenario()) as double:
        config = tmp_path / "dsp.toml"
        config.write_text(
            f"""
[stream]
arn = "{double.stream_arn}"
on_trimmed = "{on_trimmed}"
[checkpoints]
table = "prune-{unique}"
application = "app"
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "r"
consumer = "tests.system.test_leases_prune:nothing"
"""
        )
        store = DynamoDBLeaseStore(
            dynamodb, table=f"prune-{unique}", application="app", stream_arn=double.stream_arn
        )
        store.ensure_table()
        fill(store)
        before = ids(store)
        dsp = dsp_with(
            config,
            {
                **os.environ,
                "DSP_AWS__ENDPOINT_URL": endpoint,
                "DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint,
            },
        )
        status = dsp("status")
        assert status.returncode == 0, status.stderr
        assert "trimmed unread: shardId-0001-lost left the stream" in status.stdout
        totals = json.loads(dsp("status", "--json").stdout)["totals"]
        assert totals["trimmed_unread"] == 1

        dry = dsp("leases", "prune")
        assert dry.returncode == 0, dry.stderr
        assert ids(store) == before
        deleting = 7 if on_trimmed == "skip" else 6
        assert f"prune: 9 leases of app in prune-{unique}; the stream lists 4 shards" in dry.stdout
        assert f"{deleting} to delete" in dry.stdout
        assert "dry run: nothing deleted" in dry.stdout
        assert "trimmed unread: shardId-0001-lost" in dry.stdout

        applied = dsp("leases", "prune", "--apply")
        assert applied.returncode == 0, applied.stderr
        assert f"prune: {deleting} deleted" in applied.stdout
        kept = {"shardId-0003-c", "shardId-0005-n"}
        assert ids(store) == (kept if on_trimmed == "skip" else kept | {"shardId-0001-lost"})
        again = dsp("leases", "prune", "--apply")  # repeatable: nothing left to do
        assert "0 to delete" in again.stdout
        assert "prune: 0 deleted" in again.stdout


def nothing(records: list[object]) -> None:
    """A route for the configuration (prune and status read no records)."""
