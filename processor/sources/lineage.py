"""Shard topology and lineage: which shards may be read now (pure: no I/O).

A child shard is read only after its parent is finished (closed and drained, and
checkpointed as such), so that for every item key changes are handled in stream order across
a split or rollover. A shard whose parent is no longer in the stream (aged out of the 24 h
retention) and not known to the lease table may start at once.
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
        )


def ready_shards(
    shards: Iterable[Shard],
    finished: Set[str],
    known: Set[str] = frozenset(),
) -> list[Shard]:
    """Shards that are not finished and whose parent is finished or gone.

    ``finished`` holds the shard ids checkpointed as finished; ``known`` the ids the lease
    table knows at all (a parent known there but unfinished still blocks its children even
    when DescribeStream no longer lists it). Order: parents before children, then by id.
    """
    by_id = {s.shard_id: s for s in shards}
    ready = []
    for shard in by_id.values():
        if shard.shard_id in finished:
            continue
        parent = shard.parent_shard_id
        if parent is None or parent in finished:
            ready.append(shard)
        elif parent not in by_id and parent not in known:
            ready.append(shard)  # the parent aged out of the stream before we saw it
    return sorted(ready, key=lambda s: s.shard_id)
