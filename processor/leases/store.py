"""Leases and checkpoints: who reads which shard, and how far it got.

One item per (application, shard) in the lease table::

    application (HASH)  shard_id (RANGE)  owner  lease_counter  heartbeat  checkpoint
    finished  parent_shard_id  stream_arn

Ownership changes only through conditional writes that bump ``lease_counter``; a checkpoint
or renewal lands only while ``owner`` and ``lease_counter`` are still what the writer holds.
A replica whose lease was taken over therefore can never move the checkpoint again
(``LeaseLostError``). Semantics are recorded in docs/adr/0003-checkpoints-and-leases.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import error_code, translate_client_error
from processor.errors import LeaseLostError
from processor.sources.lineage import Shard

__all__ = [
    "DynamoDBLeaseStore",
    "Lease",
    "LeaseStore",
    "MemoryLeaseStore",
    "lease_to_steal",
    "leases_to_take",
]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Lease:
    shard_id: str
    owner: str | None
    counter: int
    heartbeat: float
    checkpoint: str | None = None
    finished: bool = False
    parent_shard_id: str | None = None
    handoff_to: str | None = None  # another replica asked for this lease (balancing)
    lag_s: float | None = None  # the owner's last reported lag (for `dsp status`)
    #: the owner's reader keeps failing: its last error and how many runs in a row failed
    last_error: str | None = None
    failures: int = 0
    #: the second parent of a merged shard (Kinesis)
    adjacent_parent_shard_id: str | None = None

    @property
    def parent_shard_ids(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)

    def expired(self, now: float, timeout_s: float) -> bool:
        return self.owner is not None and now - self.heartbeat > timeout_s


class LeaseStore(Protocol):
    """Where leases and checkpoints live. Every write is conditional on ownership."""

    def ensure_table(self) -> None: ...

    def list_leases(self) -> list[Lease]: ...

    def create_missing(self, shards: Iterable[Shard], existing: Set[str]) -> None: ...

    def take(self, observed: Lease, owner: str) -> Lease | None:
        """Take ``observed`` if nobody changed it since it was read; None if somebody did."""

    def request_handoff(self, observed: Lease, requester: str) -> bool:
        """Ask the owner of a live lease to hand it over (it releases after its batch)."""

    def renew(
        self, lease: Lease, *, lag_s: float | None = None, failure: tuple[str, int] | None = None
    ) -> Lease:
        """Extend the lease, recording the reader's lag and its failure (last error, runs in a
        row that failed; None clears it); the answer carries ``handoff_to``."""

    def checkpoint(self, lease: Lease, sequence_number: str | None, *, finished: bool) -> Lease: ...

    def release(self, lease: Lease, *, handoff: bool = False) -> None:
        """Give the lease up; with ``handoff`` it stays reserved for ``handoff_to`` a while."""


def leases_to_take(
    leases: Sequence[Lease],
    ready: Set[str],
    *,
    owner: str,
    now: float,
    timeout_s: float,
    limit: int,
) -> list[Lease]:
    """Which leases this owner should try to take now (pure).

    Free leases of ready shards first, then expired ones (their owner stopped renewing),
    in shard-id order, at most ``limit``.
    """
    free, expired = [], []
    for lease in sorted(leases, key=lambda item: item.shard_id):
        if lease.finished or lease.shard_id not in ready or lease.owner == owner:
            continue
        if lease.owner is None:
            reserved = lease.handoff_to not in (None, owner)
            if reserved and now - lease.heartbeat <= timeout_s:
                continue  # handed off to another replica: its to take first
            free.append(lease)
        elif lease.expired(now, timeout_s):
            expired.append(lease)
    return (free + expired)[: max(limit, 0)]


def lease_to_steal(
    leases: Sequence[Lease],
    ready: Set[str],
    *,
    owner: str,
    now: float,
    timeout_s: float,
) -> Lease | None:
    """One lease to take from the busiest owner when this owner has less than its share (pure).

    Owners are those holding live leases (plus this one); the share is the ceiling of the
    leasable shards (ready or owned, unfinished) over the owners. At most one lease moves per
    call, from an owner above the share, and only while this owner is below it, so replicas
    converge on about shards/N each without ping-pong.
    """
    live = [
        lease
        for lease in leases
        if not lease.finished and lease.owner is not None and not lease.expired(now, timeout_s)
    ]
    leasable = {
        lease.shard_id for lease in leases if not lease.finished and lease.shard_id in ready
    }
    leasable |= {lease.shard_id for lease in live}
    counts: dict[str, int] = {owner: 0}
    for lease in live:
        holder = lease.owner or ""
        counts[holder] = counts.get(holder, 0) + 1
    share = -(-len(leasable) // len(counts))
    if counts[owner] >= share:
        return None
    busiest = max((o for o in counts if o != owner), key=lambda o: (counts[o], o), default=None)
    if busiest is None or counts[busiest] <= share or counts[busiest] - counts[owner] < 2:
        return None
    if any(lease.handoff_to == owner for lease in live):
        return None  # one handoff at a time
    candidates = sorted(
        (
            lease
            for lease in live
            if lease.owner == busiest and lease.shard_id in ready and lease.handoff_to is None
        ),
        key=lambda lease: lease.shard_id,
    )
    return candidates[-1] if candidates else None


class DynamoDBLeaseStore:
    """Leases in a DynamoDB table, created on first use (on-demand billing)."""

    def __init__(
        self,
        client: Any,
        *,
        table: str,
        application: str,
        stream_arn: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self.table = table
        self.application = application
        self.stream_arn = stream_arn
        self._clock = clock
        self._sleep = sleep

    # -- table --------------------------------------------------------------------------------

    def ensure_table(self) -> None:
        try:
            self._client.describe_table(TableName=self.table)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise translate_client_error(exc, "DescribeTable") from exc
        except BotoCoreError as exc:
            raise translate_client_error(exc, "DescribeTable") from exc
        else:
            return
        try:
            self._client.create_table(
                TableName=self.table,
                KeySchema=[
                    {"AttributeName": "application", "KeyType": "HASH"},
                    {"AttributeName": "shard_id", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "application", "AttributeType": "S"},
                    {"AttributeName": "shard_id", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            log.info("lease_table_created", table=self.table)
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":  # another replica created it
                raise translate_client_error(exc, "CreateTable") from exc
        waiter = self._client.get_waiter("table_exists")
        waiter.wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    # -- reads --------------------------------------------------------------------------------

    def list_leases(self) -> list[Lease]:
        leases: list[Lease] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "application = :app",
            "ExpressionAttributeValues": {":app": {"S": self.application}},
            "ConsistentRead": True,
        }
        while True:
            try:
                page = self._client.query(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise translate_client_error(exc, "Query") from exc
            leases.extend(_lease_from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return leases
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- writes -------------------------------------------------------------------------------

    def forget(self) -> int:
        """Delete every lease of this application (a replay started afresh); returns how many."""
        leases = self.list_leases()
        for lease in leases:
            try:
                self._client.delete_item(TableName=self.table, Key=self._key(lease.shard_id))
            except (ClientError, BotoCoreError) as exc:
                raise translate_client_error(exc, "DeleteItem", shard_id=lease.shard_id) from exc
        return len(leases)

    def _key(self, shard_id: str) -> dict[str, Any]:
        return {"application": {"S": self.application}, "shard_id": {"S": shard_id}}

    def create_missing(self, shards: Iterable[Shard], existing: Set[str]) -> None:
        for shard in shards:
            if shard.shard_id in existing:
                continue
            item: dict[str, Any] = {
                **self._key(shard.shard_id),
                "lease_counter": {"N": "0"},
                "heartbeat": {"N": "0"},
                "finished": {"BOOL": False},
                "stream_arn": {"S": self.stream_arn},
            }
            if shard.parent_shard_id:
                item["parent_shard_id"] = {"S": shard.parent_shard_id}
            if shard.adjacent_parent_shard_id:
                item["adjacent_parent_shard_id"] = {"S": shard.adjacent_parent_shard_id}
            try:
                self._client.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(shard_id)",
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise translate_client_error(exc, "PutItem", shard_id=shard.shard_id) from exc

    def _update(self, lease: Lease, operation: str, **kwargs: Any) -> bool:
        try:
            self._client.update_item(TableName=self.table, Key=self._key(lease.shard_id), **kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate_client_error(exc, operation, shard_id=lease.shard_id) from exc
        except BotoCoreError as exc:
            raise translate_client_error(exc, operation, shard_id=lease.shard_id) from exc
        return True

    def take(self, observed: Lease, owner: str) -> Lease | None:
        now = self._clock()
        values: dict[str, Any] = {
            ":me": {"S": owner},
            ":c": {"N": str(observed.counter)},
            ":next": {"N": str(observed.counter + 1)},
            ":now": {"N": repr(now)},
            ":false": {"BOOL": False},
        }
        if observed.owner is None:
            condition = "lease_counter = :c AND attribute_not_exists(#owner) AND finished = :false"
        else:
            condition = (
                "lease_counter = :c AND #owner = :old AND heartbeat = :hb AND finished = :false"
            )
            values[":old"] = {"S": observed.owner}
            values[":hb"] = {"N": repr(observed.heartbeat)}
        taken = self._update(
            observed,
            "UpdateItem",
            UpdateExpression=(
                "SET #owner = :me, lease_counter = :next, heartbeat = :now REMOVE handoff_to"
            ),
            ConditionExpression=condition,
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues=values,
        )
        if not taken:
            return None
        return replace(
            observed, owner=owner, counter=observed.counter + 1, heartbeat=now, handoff_to=None
        )

    def request_handoff(self, observed: Lease, requester: str) -> bool:
        return self._update(
            observed,
            "UpdateItem",
            UpdateExpression="SET handoff_to = :me",
            ConditionExpression=(
                "#owner = :old AND lease_counter = :c AND attribute_not_exists(handoff_to)"
            ),
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={
                ":me": {"S": requester},
                ":old": {"S": observed.owner or ""},
                ":c": {"N": str(observed.counter)},
            },
        )

    def _held_condition(self, lease: Lease) -> dict[str, Any]:
        return {
            "ConditionExpression": "#owner = :me AND lease_counter = :c",
            "ExpressionAttributeNames": {"#owner": "owner"},
        }

    def _held_values(self, lease: Lease) -> dict[str, Any]:
        return {":me": {"S": lease.owner or ""}, ":c": {"N": str(lease.counter)}}

    def renew(
        self, lease: Lease, *, lag_s: float | None = None, failure: tuple[str, int] | None = None
    ) -> Lease:
        now = self._clock()
        values = {**self._held_values(lease), ":now": {"N": repr(now)}}
        expression = "SET heartbeat = :now"
        if lag_s is not None:
            expression += ", lag_s = :lag"
            values[":lag"] = {"N": f"{lag_s:.3f}"}
        if failure is not None:
            expression += ", last_error = :error, failures = :failures"
            values[":error"] = {"S": failure[0]}
            values[":failures"] = {"N": str(failure[1])}
        elif lease.last_error is not None:
            expression += " REMOVE last_error, failures"
        try:
            answer = self._client.update_item(
                TableName=self.table,
                Key=self._key(lease.shard_id),
                UpdateExpression=expression,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                **self._held_condition(lease),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise LeaseLostError("lease was taken over", shard_id=lease.shard_id) from exc
            raise translate_client_error(exc, "UpdateItem", shard_id=lease.shard_id) from exc
        except BotoCoreError as exc:
            raise translate_client_error(exc, "UpdateItem", shard_id=lease.shard_id) from exc
        handoff = answer.get("Attributes", {}).get("handoff_to")
        return replace(
            lease,
            heartbeat=now,
            handoff_to=handoff["S"] if handoff else None,
            last_error=failure[0] if failure else None,
            failures=failure[1] if failure else 0,
        )

    def checkpoint(self, lease: Lease, sequence_number: str | None, *, finished: bool) -> Lease:
        now = self._clock()
        sets = ["heartbeat = :now", "finished = :fin"]
        values = {
            **self._held_values(lease),
            ":now": {"N": repr(now)},
            ":fin": {"BOOL": finished},
        }
        if sequence_number is not None:
            sets.append("checkpoint = :seq")
            values[":seq"] = {"S": sequence_number}
        ok = self._update(
            lease,
            "UpdateItem",
            UpdateExpression="SET " + ", ".join(sets),
            ExpressionAttributeValues=values,
            **self._held_condition(lease),
        )
        if not ok:
            raise LeaseLostError(
                "lease was taken over; checkpoint not written",
                shard_id=lease.shard_id,
                sequence_number=sequence_number,
            )
        return replace(
            lease,
            heartbeat=now,
            finished=finished,
            checkpoint=sequence_number if sequence_number is not None else lease.checkpoint,
        )

    def release(self, lease: Lease, *, handoff: bool = False) -> None:
        if handoff:  # keep handoff_to, stamp the time: the requester takes it next
            expression = "REMOVE #owner SET heartbeat = :now"
            values = {**self._held_values(lease), ":now": {"N": repr(self._clock())}}
        else:
            expression = "REMOVE #owner, handoff_to"
            values = self._held_values(lease)
        self._update(
            lease,
            "UpdateItem",
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
            **self._held_condition(lease),
        )


def _lease_from_item(item: dict[str, Any]) -> Lease:
    def s(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    return Lease(
        shard_id=item["shard_id"]["S"],
        owner=s("owner"),
        counter=int(item.get("lease_counter", {"N": "0"})["N"]),
        heartbeat=float(item.get("heartbeat", {"N": "0"})["N"]),
        checkpoint=s("checkpoint"),
        finished=bool(item.get("finished", {"BOOL": False})["BOOL"]),
        parent_shard_id=s("parent_shard_id"),
        handoff_to=s("handoff_to"),
        lag_s=float(item["lag_s"]["N"]) if "lag_s" in item else None,
        last_error=s("last_error"),
        failures=int(item["failures"]["N"]) if "failures" in item else 0,
        adjacent_parent_shard_id=s("adjacent_parent_shard_id"),
    )


class MemoryLeaseStore:
    """The lease store protocol in memory, with the same conditional semantics.

    For dry runs and file replays (nothing to persist), and for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self.leases: dict[str, Lease] = {}
        self._clock = clock
        self.checkpoints: list[tuple[str, str | None, bool]] = []

    def ensure_table(self) -> None:
        return

    def list_leases(self) -> list[Lease]:
        with self._lock:
            return list(self.leases.values())

    def create_missing(self, shards: Iterable[Shard], existing: Set[str]) -> None:
        with self._lock:
            for shard in shards:
                self.leases.setdefault(
                    shard.shard_id,
                    Lease(
                        shard.shard_id,
                        None,
                        0,
                        0.0,
                        parent_shard_id=shard.parent_shard_id,
                        adjacent_parent_shard_id=shard.adjacent_parent_shard_id,
                    ),
                )

    def take(self, observed: Lease, owner: str) -> Lease | None:
        with self._lock:
            current = self.leases[observed.shard_id]
            if current != observed or current.finished:
                return None
            taken = replace(
                current,
                owner=owner,
                counter=current.counter + 1,
                heartbeat=self._clock(),
                handoff_to=None,
            )
            self.leases[observed.shard_id] = taken
            return taken

    def request_handoff(self, observed: Lease, requester: str) -> bool:
        with self._lock:
            current = self.leases[observed.shard_id]
            if (
                current.owner != observed.owner
                or current.counter != observed.counter
                or current.handoff_to
            ):
                return False
            self.leases[observed.shard_id] = replace(current, handoff_to=requester)
            return True

    def _check(self, lease: Lease) -> Lease:
        current = self.leases[lease.shard_id]
        if current.owner != lease.owner or current.counter != lease.counter:
            raise LeaseLostError("lease was taken over", shard_id=lease.shard_id)
        return current

    def renew(
        self, lease: Lease, *, lag_s: float | None = None, failure: tuple[str, int] | None = None
    ) -> Lease:
        with self._lock:
            current = replace(
                self._check(lease),
                heartbeat=self._clock(),
                lag_s=lag_s,
                last_error=failure[0] if failure else None,
                failures=failure[1] if failure else 0,
            )
            self.leases[lease.shard_id] = current
            return current

    def checkpoint(self, lease: Lease, sequence_number: str | None, *, finished: bool) -> Lease:
        with self._lock:
            current = self._check(lease)
            current = replace(
                current,
                heartbeat=self._clock(),
                finished=finished,
                checkpoint=sequence_number if sequence_number is not None else current.checkpoint,
            )
            self.leases[lease.shard_id] = current
            self.checkpoints.append((lease.shard_id, sequence_number, finished))
            return current

    def release(self, lease: Lease, *, handoff: bool = False) -> None:
        with self._lock:
            current = self.leases[lease.shard_id]
            if current.owner == lease.owner and current.counter == lease.counter:
                if handoff:
                    released = replace(current, owner=None, heartbeat=self._clock())
                else:
                    released = replace(current, owner=None, handoff_to=None)
                self.leases[lease.shard_id] = released
