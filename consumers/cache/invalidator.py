"""The cache consumer: deletes the names a batch invalidates, in one round trip."""

from __future__ import annotations

from collections.abc import Sequence

import redis
import structlog

from consumers.cache.options import CacheOptions, MemoryCache
from consumers.cache.templates import Template, wire_scalar
from processor import ConsumerContext, StreamRecord, TransientError
from processor.retries import QUICK, retrying

__all__ = ["CacheInvalidator"]

log = structlog.get_logger()

_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError)


class CacheInvalidator:
    def __init__(
        self,
        options: CacheOptions,
        context: ConsumerContext,
        client: redis.Redis | redis.RedisCluster | None,
        memory: MemoryCache | None,
    ) -> None:
        self._options = options
        self._templates = [Template.parse(t) for t in options.keys]
        self._context = context
        self._redis = client
        self._memory = memory
        self._stats = context.stats

    def names(self, records: Sequence[StreamRecord]) -> list[str]:
        """Every cache name the batch invalidates, each once, in first-seen order."""
        seen: dict[str, None] = {}
        for record in records:
            values = {name: wire_scalar(v) for name, v in record.wire_keys.items()}
            for template in self._templates:
                for name in template.names(record, values):
                    seen.setdefault(name, None)
        return list(seen)

    def __call__(self, records: Sequence[StreamRecord]) -> None:
        names = self.names(records)
        if not names:
            return
        if self._memory is not None:
            removed = self._memory.delete(names)
        else:
            removed = self._redis_invalidate(names)
        self._stats.add("invalidated", len(names))
        self._stats.add("entries_removed", removed)

    def _redis_invalidate(self, names: list[str]) -> int:
        assert self._redis is not None
        client = self._redis
        channel = self._options.channel

        def call() -> int:
            try:
                pipe = client.pipeline(transaction=False)
                for name in names:
                    pipe.unlink(name)
                if channel and not isinstance(client, redis.RedisCluster):
                    for name in names:
                        pipe.publish(channel, name)
                results = pipe.execute()
                if channel and isinstance(client, redis.RedisCluster):
                    # a cluster pipeline refuses PUBLISH; one node's pipeline takes them, and
                    # the cluster delivers each message to subscribers on every node
                    node = client.get_default_node().redis_connection  # type: ignore[no-untyped-call]
                    publish = node.pipeline(transaction=False)
                    for name in names:
                        publish.publish(channel, name)
                    publish.execute()
            except (
                redis.ConnectionError,
                redis.TimeoutError,
                redis.exceptions.ClusterError,
            ) as exc:
                raise TransientError(
                    f"Redis unavailable: {exc}", consumer=self._context.route
                ) from exc
            if channel:
                self._stats.add("published", len(names))
            return int(sum(results[: len(names)]))

        calls = retrying(
            wait=QUICK,
            stop=self._context.stop,
            attempts=self._options.max_attempts,
            sleep=self._context.sleep,
        )
        return calls(call)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
