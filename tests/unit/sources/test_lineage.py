"""Shard lineage: which shards may be read now."""

from __future__ import annotations

from processor.sources.lineage import Shard, ready_shards


def shard(shard_id: str, parent: str | None = None, closed: bool = False) -> Shard:
    return Shard(shard_id, parent, "1", "9" if closed else None)


TREE = [
    shard("a", closed=True),
    shard("b", "a", closed=True),  # split of a
    shard("c", "a", closed=True),
    shard("d", "b"),  # third generation
    shard("e", "c"),
]


def ids(shards: list[Shard]) -> list[str]:
    return [s.shard_id for s in shards]


def test_only_the_root_is_ready_at_first() -> None:
    """Children wait for their parent; the root starts at once."""
    assert ids(ready_shards(TREE, set())) == ["a"]


def test_siblings_become_ready_together_when_their_parent_finishes() -> None:
    """Both children of a split run in parallel once the parent is finished."""
    assert ids(ready_shards(TREE, {"a"})) == ["b", "c"]


def test_third_generation_waits_for_its_own_parent_only() -> None:
    """A grandchild is ready when its parent finished, regardless of its uncle."""
    assert ids(ready_shards(TREE, {"a", "b"})) == ["c", "d"]


def test_finished_shards_are_never_ready_again() -> None:
    """A shard checkpointed as finished is not read again."""
    assert ids(ready_shards(TREE, {"a", "b", "c", "d", "e"})) == []


def test_a_shard_whose_parent_aged_out_starts_at_once() -> None:
    """A parent no longer in the stream and unknown to the lease table does not block."""
    assert ids(ready_shards([shard("x", "gone")], set())) == ["x"]


def test_a_parent_known_to_the_lease_table_but_unfinished_still_blocks() -> None:
    """A parent absent from DescribeStream but unfinished in the lease table blocks its child."""
    assert ids(ready_shards([shard("x", "p")], set(), known={"p"})) == []
    assert ids(ready_shards([shard("x", "p")], {"p"}, known={"p"})) == ["x"]


def test_shard_from_api_reads_the_sequence_range() -> None:
    """A DescribeStream shard maps to a Shard; an EndingSequenceNumber means closed."""
    s = Shard.from_api(
        {
            "ShardId": "s1",
            "ParentShardId": "s0",
            "SequenceNumberRange": {"StartingSequenceNumber": "10", "EndingSequenceNumber": "20"},
        }
    )
    assert s == Shard("s1", "s0", "10", "20")
    assert s.is_closed
    assert not Shard.from_api({"ShardId": "s2", "SequenceNumberRange": {}}).is_closed


def test_a_merged_shard_waits_for_both_parents() -> None:
    """A shard made by merging two (Kinesis) starts only when both parents are finished."""
    merged = Shard("m", "p1", "50", None, adjacent_parent_shard_id="p2")
    stream = [shard("p1", closed=True), shard("p2", closed=True), merged]
    assert ids(ready_shards(stream, set())) == ["p1", "p2"]
    assert ids(ready_shards(stream, {"p1"})) == ["p2"]
    assert ids(ready_shards(stream, {"p2"})) == ["p1"]
    assert ids(ready_shards(stream, {"p1", "p2"})) == ["m"]


def test_a_merged_shard_whose_parents_aged_out_starts_at_once() -> None:
    """Parents gone from the stream and unknown to the lease table do not block; a known,
    unfinished one still does."""
    merged = Shard("m", "gone1", "50", None, adjacent_parent_shard_id="gone2")
    assert ids(ready_shards([merged], set())) == ["m"]
    assert ids(ready_shards([merged], set(), known={"gone2"})) == []


def test_a_kinesis_list_shards_entry_keeps_both_parents() -> None:
    """Kinesis ListShards (botocore's Shard shape) names a merge's second parent
    AdjacentParentShardId."""
    s = Shard.from_api(
        {
            "ShardId": "shardId-000000000002",
            "ParentShardId": "shardId-000000000000",
            "AdjacentParentShardId": "shardId-000000000001",
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "3402823669209384"},
            "SequenceNumberRange": {"StartingSequenceNumber": "4959"},
        }
    )
    assert s.parent_shard_ids == ("shardId-000000000000", "shardId-000000000001")
    assert not s.is_closed
