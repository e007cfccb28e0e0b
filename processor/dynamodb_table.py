"""The DynamoDB table calls consumers make, with botocore's errors translated here.

Consumers (built-in and users') never catch botocore exceptions: they call a
:class:`DynamoDBTable` and see the project's error tree. ``ValidationException`` on a write
is a :class:`~processor.errors.RecordError` (the item itself is refused: dead-letter it);
throttling is a ``TransientError`` with ``throttled`` set; a failed condition is
:class:`ConditionFailed`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import error_code, translate_client_error
from processor.errors import ConditionFailed, RecordError

__all__ = ["ConditionFailed", "DynamoDBTable", "WriteAnswer"]


@dataclass(frozen=True, slots=True)
class WriteAnswer:
    #: BatchWriteItem's UnprocessedItems for this table (empty: everything was written)
    unprocessed: list[dict[str, Any]]
    #: capacity units the call consumed (ReturnConsumedCapacity=TOTAL)
    consumed: float
    #: botocore retried before this answer (throttling or a 5xx): the table is pushing back
    retried: bool


class DynamoDBTable:
    """One table through a shared low-level client (thread-safe, as the client is)."""

    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self.name = name

    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed(f"{operation} on {self.name}: condition failed") from exc
            if code == "ValidationException" and operation != "DescribeTable":
                raise RecordError(f"{operation} rejected the request: {exc}") from exc
            raise translate_client_error(exc, operation) from exc
        except BotoCoreError as exc:
            raise translate_client_error(exc, operation) from exc

    def key_attributes(self) -> tuple[str, ...] | None:
        """The table's key schema (hash key first); None when there is no such table."""
        try:
            table = self._client.describe_table(TableName=self.name)["Table"]
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise translate_client_error(exc, "DescribeTable") from exc
        except BotoCoreError as exc:
            raise translate_client_error(exc, "DescribeTable") from exc
        return tuple(str(k["AttributeName"]) for k in table["KeySchema"])

    def batch_write(self, requests: list[dict[str, Any]]) -> WriteAnswer:
        """One BatchWriteItem call of up to 25 put/delete requests on this table."""
        answer = self._call(
            "BatchWriteItem",
            self._client.batch_write_item,
            RequestItems={self.name: requests},
            ReturnConsumedCapacity="TOTAL",
        )
        consumed = sum(
            float(u.get("CapacityUnits", 0)) for u in answer.get("ConsumedCapacity") or []
        )
        return WriteAnswer(
            unprocessed=list((answer.get("UnprocessedItems") or {}).get(self.name, [])),
            consumed=consumed,
            retried=bool(answer.get("ResponseMetadata", {}).get("RetryAttempts", 0)),
        )

    def write_if(self, operation: str, condition: Mapping[str, Any], **request: Any) -> WriteAnswer:
        """A conditional PutItem or DeleteItem; raises :class:`ConditionFailed` when the
        condition does not hold."""
        method = {"PutItem": self._client.put_item, "DeleteItem": self._client.delete_item}
        answer = self._call(
            operation,
            method[operation],
            TableName=self.name,
            ReturnConsumedCapacity="TOTAL",
            **request,
            **condition,
        )
        used = answer.get("ConsumedCapacity") or {}
        return WriteAnswer(
            unprocessed=[],
            consumed=float(used.get("CapacityUnits", 0)),
            retried=bool(answer.get("ResponseMetadata", {}).get("RetryAttempts", 0)),
        )

    def scan_pages(self, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        """Every page of a Scan (items in DynamoDB JSON), following LastEvaluatedKey."""
        while True:
            page = self._call("Scan", self._client.scan, TableName=self.name, **kwargs)
            yield list(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
