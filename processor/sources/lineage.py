"""Shard topology and lineage: which shards may be read now (pure: no I/O).

A child shard is read only after its parents are finished (closed and drained, and
checkpointed as such), so that for every item key changes are handled in stream order across
a split, a rollover or a merge. A DynamoDB Streams shard has one parent; a Kinesis shard made
by a merge has two (``ParentShardId`` and ``AdjacentParentShardId``). A parent that is no
longer in the stream (aged out of retention) and not known to the lease table does not block.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Any

__all__ = ["Shard", "ready_shards"]


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parent_shard_id: str | None
    starting_sequence_number: str | None
    ending_sequence_number: str | None
    #: the second parent of a shard made by merging two (Kinesis); None on DynamoDB Streams
    adjacent_parent_shard_id: str | None = None

    @property
    def parent_shard_ids(self) -> tuple[str, ...]:
        """Every parent: none, one, or two after a merge."""
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)

    @property
    def is_closed(self) -> bool:
        """A closed shard receives no new records; it ends once drained."""
        return self.ending_sequence_number is not None

    @classmethod
    def from_api(cls, shard: Mapping[str, Any]) -> Shard:
        seq = shard.get("SequenceNumberRange") or {}
        return cls(
            shard_id=str(shard["ShardId"]),
            parent_shard_id=shard.get("ParentShardId"),
            starting_sequence_number=seq.get("StartingSequenceNumber"),
            ending_sequence_number=seq.get("EndingSequenceNumber"),
            adjacent_parent_shard_id=shard.get("AdjacentParentShardId"),
        )


def ready_shards(
    shards: Iterable[Shard],
    finished: Set[str],
    known: Set[str] = frozenset(),
) -> list[Shard]:
    """Shards that are not finished and whose parents are each finished or gone.

    ``finished`` holds the shard ids checkpointed as finished; ``known`` the ids the lease
    table knows at all (a parent known there but unfinished still blocks its children even
    when DescribeStream no longer lists it). Order: parents before children, then by id.
    """
    by_id = {s.shard_id: s for s in shards}
    ready = []
    for shard in by_id.values():
        if shard.shard_id in finished:
            continue
        # a parent blocks until finished, unless it aged out of the stream before we saw it
        if all(
            p in finished or (p not in by_id and p not in known) for p in shard.parent_shard_ids
        ):
            ready.append(shard)
    return sorted(ready, key=lambda s: s.shard_id)
