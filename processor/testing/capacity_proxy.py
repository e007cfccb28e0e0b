"""A DynamoDB endpoint with DynamoDB's write capacity: a proxy in front of the moto server.

moto writes whatever it is sent. DynamoDB grants write capacity as a token bucket per table
(provisioned WCU, or an on-demand table's current limit) that banks up to 300 s of unused
capacity as burst credit, caps each partition (1,000 WCU/s), and charges ceil(size / 1 KB)
WCU per item written. A BatchWriteItem that partly fits writes what fits and returns the rest
in ``UnprocessedItems``; one where nothing fits, or a PutItem/DeleteItem that does not fit,
fails with ``ProvisionedThroughputExceededException``. This proxy applies that model to
BatchWriteItem, PutItem and DeleteItem, forwards what fits to the upstream, answers
``ConsumedCapacity`` when asked, and forwards everything else unchanged::

    model = CapacityModel(wcu_per_s=400, partitions=4, partition_wcu_per_s=150)
    with CapacityProxy(moto_endpoint, model) as proxy:
        ...  # point the writer at proxy.endpoint; proxy.stats has what it admitted

Items map to partitions by a hash of their partition key attribute (``partition_key``).
``model.set_capacity(wcu)`` changes the table's rate mid-run (an on-demand table reaching
its limit); burst credit already banked stays.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3

from processor.testing._local_server import LocalJsonServer, Served, forward

__all__ = ["CapacityModel", "CapacityProxy", "item_wcu", "partition_of"]

_JSON = {"Content-Type": "application/x-amz-json-1.0"}


def value_size(value: Mapping[str, Any]) -> int:
    ((tag, inner),) = value.items()
    if tag == "S":
        return len(str(inner).encode())
    if tag == "N":
        digits = str(inner).lstrip("-").replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if tag == "B":
        return len(base64.b64decode(inner))
    if tag in ("BOOL", "NULL"):
        return 1
    if tag in ("SS", "NS", "BS"):
        return sum(value_size({tag[0]: v}) for v in inner)
    if tag == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if tag == "M":
        return 3 + sum(len(k.encode()) + 1 + value_size(v) for k, v in inner.items())
    return 0


def _item_of(write: Mapping[str, Any]) -> dict[str, Any]:
    """A BatchWriteItem request's item (a put) or key (a delete)."""
    if "PutRequest" in write:
        return dict(write["PutRequest"]["Item"])
    return dict(write["DeleteRequest"]["Key"])


def item_wcu(item: Mapping[str, Any]) -> int:
    """Write capacity units to write ``item`` (DynamoDB JSON): one per started KB."""
    size = sum(len(name.encode()) + value_size(value) for name, value in item.items())
    return max(1, math.ceil(size / 1024))


def partition_of(item: Mapping[str, Any], partitions: int, partition_key: str = "pk") -> int:
    """Which of ``partitions`` an item (or key) in the wire format lands in: a hash of its
    partition key, as DynamoDB spreads keys."""
    key = json.dumps(item.get(partition_key), sort_keys=True).encode()
    digest = hashlib.md5(key).digest()  # noqa: S324 - spreading keys, not security
    return int.from_bytes(digest[:8], "big") % partitions


@dataclass
class CapacityModel:
    """A table's write capacity: a bucket per table with burst credit, and per partition."""

    wcu_per_s: float
    #: unused capacity is banked up to this many seconds of it (DynamoDB: 300)
    burst_s: float = 300.0
    #: credit banked at the start (0: the burst is spent, as after a long catch-up)
    burst_credit: float = 0.0
    partitions: int = 4
    partition_wcu_per_s: float = 1000.0
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _partition_tokens: list[float] = field(init=False)
    _updated: float = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._tokens = self.burst_credit
        self._partition_tokens = [0.0] * self.partitions
        self._updated = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        elapsed, self._updated = now - self._updated, now
        self._tokens = min(self._tokens + elapsed * self.wcu_per_s, self.wcu_per_s * self.burst_s)
        cap = self.partition_wcu_per_s  # a partition banks at most one second
        self._partition_tokens = [
            min(t + elapsed * self.partition_wcu_per_s, cap) for t in self._partition_tokens
        ]

    def set_capacity(self, wcu_per_s: float) -> None:
        with self._lock:
            self._refill()
            self.wcu_per_s = wcu_per_s

    def admit(self, writes: list[tuple[int, int]]) -> list[bool]:
        """For each (partition, wcu), in order: whether it fits now (and is charged)."""
        with self._lock:
            self._refill()
            out = []
            for partition, wcu in writes:
                fits = self._tokens >= wcu and self._partition_tokens[partition] >= wcu
                if fits:
                    self._tokens -= wcu
                    self._partition_tokens[partition] -= wcu
                out.append(fits)
            return out


class CapacityProxy(Served):
    """Apply a :class:`CapacityModel` to the writes sent to ``upstream``."""

    def __init__(self, upstream: str, model: CapacityModel, *, partition_key: str = "pk") -> None:
        self.upstream = upstream.rstrip("/")
        self.model = model
        self.partition_key = partition_key
        #: calls, throttled_calls, items_written, items_unprocessed, wcu_written,
        #: and partition_N_wcu per partition
        self.stats: Counter[str] = Counter()
        #: every item (or key, for a delete) written, in the order the table took them
        self.written: list[dict[str, Any]] = []
        #: the items (or keys) each BatchWriteItem call carried, in the order they came
        self.batch_calls: list[list[dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager(maxsize=32, retries=False)
        self._server = LocalJsonServer(self._handle)

    def partition_of(self, item: Mapping[str, Any]) -> int:
        return partition_of(item, self.model.partitions, self.partition_key)

    def _forward(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        return forward(self._http, self.upstream, headers, body)

    def _throttled(self) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.stats["throttled_calls"] += 1
        error = {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was "
            "exceeded. Consider increasing your provisioning level with the UpdateTable API.",
        }
        return 400, dict(_JSON), json.dumps(error).encode()

    def _count(
        self, written: list[tuple[int, int]], unprocessed: int, items: list[dict[str, Any]]
    ) -> None:
        with self._lock:
            self.written.extend(items)
            self.stats["items_written"] += len(written)
            self.stats["items_unprocessed"] += unprocessed
            for partition, wcu in written:
                self.stats["wcu_written"] += wcu
                self.stats[f"partition_{partition}_wcu"] += wcu

    def _handle(
        self, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        operation = target.rpartition(".")[2]
        with self._lock:
            self.stats[f"{operation}_calls"] += 1
        if operation == "BatchWriteItem":
            return self._batch_write(headers, body)
        if operation in ("PutItem", "DeleteItem"):
            return self._single_write(operation, headers, body)
        return self._forward(headers, body)

    def _batch_write(
        self, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        request = json.loads(body)
        ((table, writes),) = request["RequestItems"].items()
        items = [_item_of(w) for w in writes]
        with self._lock:
            self.batch_calls.append(items)
        charges = [(self.partition_of(item), item_wcu(item)) for item in items]
        fits = self.model.admit(charges)
        if not any(fits):
            return self._throttled()
        kept = [w for w, ok in zip(writes, fits, strict=True) if ok]
        rest = [w for w, ok in zip(writes, fits, strict=True) if not ok]
        forwarded = {**request, "RequestItems": {table: kept}}
        forwarded.pop("ReturnConsumedCapacity", None)
        status, out, payload = self._forward(headers, json.dumps(forwarded).encode())
        if status != 200:
            return status, out, payload
        written = [c for c, ok in zip(charges, fits, strict=True) if ok]
        self._count(written, len(rest), [_item_of(w) for w in kept])
        answer = json.loads(payload)
        answer["UnprocessedItems"] = {table: rest} if rest else {}
        if request.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
            answer["ConsumedCapacity"] = [
                {"TableName": table, "CapacityUnits": float(sum(w for _, w in written))}
            ]
        return status, out, json.dumps(answer).encode()

    def _single_write(
        self, operation: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        request = json.loads(body)
        item = request.get("Item") or request.get("Key") or {}
        charge = (self.partition_of(item), item_wcu(item))
        if not self.model.admit([charge])[0]:
            return self._throttled()
        status, out, payload = self._forward(headers, body)
        if status == 200 or b"ConditionalCheckFailed" in payload:
            # a failed condition is charged as a write, as in DynamoDB
            self._count([charge], 0, [item] if status == 200 else [])
        if status == 200 and request.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
            answer = json.loads(payload or b"{}")
            answer["ConsumedCapacity"] = {
                "TableName": request.get("TableName"),
                "CapacityUnits": float(charge[1]),
            }
            payload = json.dumps(answer).encode()
        return status, out, payload
