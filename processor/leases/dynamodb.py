"""Leases and checkpoints in a DynamoDB table, moved only by conditional writes (ADR 0003)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Set
from dataclasses import replace
from typing import Any

import msgspec
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import error_code, translate_client_error
from processor.errors import LeaseLostError
from processor.fast_path import FastPath
from processor.leases.model import Lease
from processor.sources.lineage import Shard

__all__ = ["DynamoDBLeaseStore"]

log = structlog.get_logger()


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
        fast: FastPath | None = None,
    ) -> None:
        """``fast``: the renewals' fast path (ADR 0030), if any."""
        self._client = client
        self._fast = fast
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

    def create_missing(
        self, shards: Iterable[Shard], existing: Set[str], *, from_start: Set[str] = frozenset()
    ) -> None:
        for shard in shards:
            if shard.shard_id not in existing:
                self._put_new(
                    shard.shard_id,
                    (shard.parent_shard_id, shard.adjacent_parent_shard_id),
                    from_start=shard.shard_id in from_start,
                )

    def delete(self, observed: Lease) -> bool:
        values: dict[str, Any] = {
            ":c": {"N": str(observed.counter)},
            ":hb": {"N": repr(observed.heartbeat)},
            ":fin": {"BOOL": observed.finished},
        }
        condition = "lease_counter = :c AND heartbeat = :hb AND finished = :fin AND "
        if observed.owner is None:
            condition += "attribute_not_exists(#owner)"
        else:
            condition += "#owner = :o"
            values[":o"] = {"S": observed.owner}
        try:
            self._client.delete_item(
                TableName=self.table,
                Key=self._key(observed.shard_id),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate_client_error(exc, "DeleteItem", shard_id=observed.shard_id) from exc
        except BotoCoreError as exc:
            raise translate_client_error(exc, "DeleteItem", shard_id=observed.shard_id) from exc
        return True

    def mark_from_start(self, observed: Lease) -> bool:
        return self._update(
            observed,
            "UpdateItem",
            UpdateExpression="SET from_start = :t",
            ConditionExpression="lease_counter = :c AND attribute_not_exists(checkpoint)",
            ExpressionAttributeValues={":t": {"BOOL": True}, ":c": {"N": str(observed.counter)}},
        )

    def import_lease(self, lease: Lease) -> bool:
        """Write a free lease with ``lease``'s checkpoint, finished flag and parents unless one
        exists for its shard (a lease dsp already has is never overwritten); whether it did."""
        return self._put_new(
            lease.shard_id,
            (lease.parent_shard_id, lease.adjacent_parent_shard_id),
            checkpoint=lease.checkpoint,
            finished=lease.finished,
        )

    def _put_new(
        self,
        shard_id: str,
        parents: tuple[str | None, str | None],
        *,
        checkpoint: str | None = None,
        finished: bool = False,
        from_start: bool = False,
    ) -> bool:
        item: dict[str, Any] = {
            **self._key(shard_id),
            "lease_counter": {"N": "0"},
            "heartbeat": {"N": "0"},
            "finished": {"BOOL": finished},
            "stream_arn": {"S": self.stream_arn},
        }
        for name, parent in zip(
            ("parent_shard_id", "adjacent_parent_shard_id"), parents, strict=True
        ):
            if parent:
                item[name] = {"S": parent}
        if checkpoint is not None:
            item["checkpoint"] = {"S": checkpoint}
        if from_start:
            item["from_start"] = {"BOOL": True}
        try:
            self._client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(shard_id)",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise translate_client_error(exc, "PutItem", shard_id=shard_id) from exc
            return False
        return True

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
        params = {
            "TableName": self.table,
            "Key": self._key(lease.shard_id),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
            **self._held_condition(lease),
        }
        body = self._fast.call("UpdateItem", params) if self._fast is not None else None
        try:
            answer = (
                msgspec.json.decode(body)
                if body is not None
                else self._client.update_item(**params)
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

    def checkpoint(
        self,
        lease: Lease,
        sequence_number: str | None,
        *,
        finished: bool,
        window_state: str | None = None,
    ) -> Lease:
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
        remove = ""
        if window_state:
            sets.append("window_state = :ws")
            values[":ws"] = {"S": window_state}
        elif window_state == "":
            remove = " REMOVE window_state"
        ok = self._update(
            lease,
            "UpdateItem",
            UpdateExpression="SET " + ", ".join(sets) + remove,
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
            window_state=(window_state or None) if window_state is not None else lease.window_state,
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
        from_start=bool(item.get("from_start", {"BOOL": False})["BOOL"]),
        window_state=s("window_state"),
    )
