"""A DynamoDB endpoint that throttles: a proxy in front of a real one (the moto server).

moto never throttles. This proxy forwards every request to it unchanged, except that every
``throttle_every``-th BatchWriteItem is answered ``ProvisionedThroughputExceededException``
and every ``partial_every``-th one is only half forwarded: the other half comes back as
``UnprocessedItems``, as real DynamoDB does under load.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import urllib3

from processor.testing._local_server import LocalJsonServer, Served, forward

__all__ = ["ThrottlingProxy"]


class ThrottlingProxy(Served):
    def __init__(
        self, upstream: str, *, throttle_every: int | None = None, partial_every: int | None = None
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.throttle_every = throttle_every
        self.partial_every = partial_every
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager(maxsize=16, retries=False)
        self._server = LocalJsonServer(self._handle)

    def _forward(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        return forward(self._http, self.upstream, headers, body)

    def _handle(
        self, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        operation = target.rpartition(".")[2]
        with self._lock:
            self.calls[operation] += 1
            n = self.calls[operation]
        if operation != "BatchWriteItem":
            return self._forward(headers, body)
        if self.throttle_every and n % self.throttle_every == 0:
            with self._lock:
                self.calls["throttled"] += 1
            error = {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "The level of configured provisioned throughput was exceeded",
            }
            return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(error).encode()
        if self.partial_every and n % self.partial_every == 0:
            request = json.loads(body)
            kept: dict[str, list[Any]] = {}
            unprocessed: dict[str, list[Any]] = {}
            for table, writes in request["RequestItems"].items():
                half = len(writes) // 2
                kept[table], unprocessed[table] = (
                    writes[: len(writes) - half],
                    writes[len(writes) - half :],
                )
            unprocessed = {t: w for t, w in unprocessed.items() if w}
            status, out, payload = self._forward(
                headers, json.dumps({**request, "RequestItems": kept}).encode()
            )
            if status == 200 and unprocessed:
                answer = json.loads(payload)
                answer["UnprocessedItems"] = unprocessed
                payload = json.dumps(answer).encode()
                with self._lock:
                    self.calls["unprocessed_items"] += sum(len(w) for w in unprocessed.values())
            return status, out, payload
        return self._forward(headers, body)
