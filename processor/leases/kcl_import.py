"""Checkpoints from a KCL lease table, as our leases: the cut-over from the Java KCL.

The KCL (1.x, 2.x and 3.x, with or without the DynamoDB Streams adapter) keeps one item per
shard in a table named after its application::

    leaseKey  checkpoint  checkpointSubSequenceNumber  parentShardIds  leaseOwner  leaseCounter

``checkpoint`` is the sequence number of the last record processed, or a sentinel:
``TRIM_HORIZON`` or ``LATEST`` (nothing processed yet), ``AT_TIMESTAMP``, or ``SHARD_END``
(the shard is finished). Our checkpoint means the same thing, the last record handled, and
reading resumes after it. So a sequence number is carried over as it is. ``SHARD_END`` becomes
a finished lease, so its children are read next. The other sentinels become a lease without a
checkpoint, which starts at ``stream.starting_position``.

In multi-stream mode a lease key is ``account:stream:epoch:shardId``: the shard id is its last
part. A partly processed aggregated record (``checkpointSubSequenceNumber`` > 0, KPL
aggregation) has no counterpart here and is refused. A table of another schema is refused,
naming the attribute that was expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import translate_client_error
from processor.errors import ConfigError
from processor.leases.model import Lease

__all__ = ["KclLease", "describe", "parse_kcl_item", "read_kcl_leases", "to_lease"]

#: checkpoints that are not sequence numbers
NOT_STARTED = frozenset({"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"})
SHARD_END = "SHARD_END"


@dataclass(frozen=True, slots=True)
class KclLease:
    shard_id: str
    #: a sequence number, or one of the sentinels
    checkpoint: str
    parents: tuple[str, ...] = ()
    owner: str | None = None

    @property
    def finished(self) -> bool:
        return self.checkpoint == SHARD_END

    @property
    def started(self) -> bool:
        return self.checkpoint not in NOT_STARTED and not self.finished


def _string(item: Mapping[str, Any], name: str, table: str) -> str:
    value = item.get(name)
    if not isinstance(value, dict) or not isinstance(value.get("S"), str):
        found = ", ".join(sorted(item)) or "nothing"
        raise ConfigError(
            "--from-table",
            table,
            f"not a KCL lease table: an item has no string attribute {name!r} (it has: {found})",
        )
    return str(value["S"])


def parse_kcl_item(item: Mapping[str, Any], table: str) -> KclLease:
    """One KCL lease item; ConfigError naming the attribute a KCL lease must have."""
    key = _string(item, "leaseKey", table)
    checkpoint = _string(item, "checkpoint", table)
    sub = item.get("checkpointSubSequenceNumber", {}).get("N", "0")
    if int(sub) != 0:
        raise ConfigError(
            "--from-table",
            table,
            f"lease {key}: checkpointSubSequenceNumber {sub} (a partly processed aggregated "
            "record) cannot be resumed here; let the KCL finish that record first",
        )
    parents = item.get("parentShardIds", {}).get("SS", [])
    owner = item.get("leaseOwner", {}).get("S")
    return KclLease(
        shard_id=key.rsplit(":", 1)[-1],
        checkpoint=checkpoint,
        parents=tuple(sorted(parents)),
        owner=owner,
    )


def to_lease(kcl: KclLease) -> Lease:
    """Our free lease for a KCL lease: its checkpoint, or finished, with its parents."""
    parent, adjacent = (*kcl.parents, None, None)[:2]
    return Lease(
        shard_id=kcl.shard_id,
        owner=None,
        counter=0,
        heartbeat=0.0,
        checkpoint=kcl.checkpoint if kcl.started else None,
        finished=kcl.finished,
        parent_shard_id=parent,
        adjacent_parent_shard_id=adjacent,
    )


def read_kcl_leases(dynamodb: Any, table: str) -> list[KclLease]:
    """Every lease of the KCL table (a consistent scan, all pages)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    try:
        while True:
            page = dynamodb.scan(**kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise ConfigError("--from-table", table, "no such table") from exc
        raise translate_client_error(exc, "Scan") from exc
    except BotoCoreError as exc:
        raise translate_client_error(exc, "Scan") from exc
    return sorted((parse_kcl_item(i, table) for i in items), key=lambda k: k.shard_id)


def describe(leases: Iterable[KclLease]) -> str:
    """One line per lease, for the command's output."""
    lines = []
    for kcl in leases:
        what = (
            "finished (SHARD_END)"
            if kcl.finished
            else f"checkpoint {kcl.checkpoint}"
            if kcl.started
            else f"not started ({kcl.checkpoint}): starts at stream.starting_position"
        )
        owner = f"; KCL owner {kcl.owner} (stop the daemon first)" if kcl.owner else ""
        lines.append(f"{kcl.shard_id}: {what}{owner}")
    return "\n".join(lines)
