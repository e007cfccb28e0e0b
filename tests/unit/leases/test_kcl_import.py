"""KCL lease items as our leases (the schema the Java KCL writes: leaseKey, checkpoint,
checkpointSubSequenceNumber, parentShardIds, leaseOwner, leaseCounter)."""

from __future__ import annotations

from typing import Any

import pytest

from processor.errors import ConfigError
from processor.leases.kcl_import import parse_kcl_item, to_lease


def item(key: str, checkpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "leaseKey": {"S": key},
        "checkpoint": {"S": checkpoint},
        "checkpointSubSequenceNumber": {"N": "0"},
        "leaseCounter": {"N": "17"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        **extra,
    }


def test_a_sequence_number_is_carried_over_as_the_checkpoint() -> None:
    """Both mean the last record processed: reading resumes after it."""
    lease = to_lease(parse_kcl_item(item("shardId-000000000001", "49651"), "app"))
    assert (lease.shard_id, lease.checkpoint, lease.finished, lease.owner) == (
        "shardId-000000000001",
        "49651",
        False,
        None,
    )


def test_shard_end_is_a_finished_lease_with_its_parents() -> None:
    """SHARD_END: finished (its children are read next); parents carried for lineage, two for
    a Kinesis merge."""
    merged = item("shardId-3", "SHARD_END", parentShardIds={"SS": ["shardId-2", "shardId-1"]})
    lease = to_lease(parse_kcl_item(merged, "app"))
    assert lease.finished
    assert lease.checkpoint is None
    assert lease.parent_shard_ids == ("shardId-1", "shardId-2")


@pytest.mark.parametrize("sentinel", ["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"])
def test_a_lease_not_started_has_no_checkpoint(sentinel: str) -> None:
    """Nothing processed yet: it starts at stream.starting_position."""
    lease = to_lease(parse_kcl_item(item("shardId-1", sentinel), "app"))
    assert lease.checkpoint is None
    assert not lease.finished


def test_a_multi_stream_lease_key_gives_its_shard_id() -> None:
    """KCL 2/3 multi-stream mode: account:stream:epoch:shardId."""
    kcl = parse_kcl_item(item("123456789012:orders:1700000000:shardId-000000000004", "1"), "a")
    assert kcl.shard_id == "shardId-000000000004"


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ({"leaseKey": None}, "'leaseKey'"),
        ({"checkpoint": None}, "'checkpoint'"),
        ({"checkpoint": {"N": "5"}}, "'checkpoint'"),
    ],
)
def test_a_table_of_another_schema_is_refused_naming_the_attribute(
    broken: dict[str, Any], named: str
) -> None:
    """Not a KCL lease table: the error names the attribute a KCL lease has."""
    raw = {k: v for k, v in {**item("shardId-1", "5"), **broken}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        parse_kcl_item(raw, "orders")
    assert named in str(caught.value)
    assert caught.value.key == "--from-table"


def test_a_partly_processed_aggregated_record_is_refused() -> None:
    """checkpointSubSequenceNumber > 0 cannot be resumed without repeating or skipping."""
    raw = item("shardId-1", "5", checkpointSubSequenceNumber={"N": "3"})
    with pytest.raises(ConfigError, match="checkpointSubSequenceNumber 3"):
        parse_kcl_item(raw, "orders")
