"""Invalidate cache entries named after each changed item's key.

``options.keys = ["order:{pk}:{sk}", ...]``: Python format templates whose fields name key
attributes (their values as on the wire: strings, numbers as written, binary as base64).
Names are deleted from Redis at ``options.redis_url`` with one pipelined round trip of
single-key ``UNLINK`` commands (safe on Redis Cluster), or from an in-process cache when
``redis_url = "memory"``. With ``options.channel`` each invalidated name is also published on
that Redis channel so services holding in-process caches can drop them.
"""

from __future__ import annotations

import string
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import structlog
from pydantic import Field, field_validator
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_when_event_set,
    wait_random_exponential,
)

from consumers._options import Options
from processor import ConfigError, ConsumerContext, StreamRecord, TransientError

__all__ = ["CacheInvalidator", "MemoryCache", "build"]

log = structlog.get_logger()

MEMORY = "memory"


class CacheOptions(Options):
    keys: list[str] = Field(min_length=1)
    redis_url: str = MEMORY
    channel: str | None = None
    max_attempts: int = Field(default=5, ge=1, le=100)
    socket_timeout_s: float = Field(default=2.0, gt=0)

    @field_validator("redis_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value != MEMORY and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError('must be "memory" or a redis://, rediss:// or unix:// URL')
        return value


class MemoryCache:
    """A thread-safe in-process cache (what ``redis_url = "memory"`` invalidates)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}

    def set(self, name: str, value: Any) -> None:
        with self._lock:
            self._data[name] = value

    def get(self, name: str) -> Any:
        with self._lock:
            return self._data.get(name)

    def delete(self, names: Sequence[str]) -> int:
        with self._lock:
            return sum(self._data.pop(n, _ABSENT) is not _ABSENT for n in names)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


_ABSENT = object()


def _fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def _wire_scalar(value: Mapping[str, Any]) -> str:
    ((_tag, raw),) = value.items()
    return str(raw)


class CacheInvalidator:
    def __init__(
        self,
        options: CacheOptions,
        context: ConsumerContext,
        client: redis.Redis | None,
        memory: MemoryCache | None,
    ) -> None:
        self._options = options
        self._context = context
        self._redis = client
        self._memory = memory
        self._stats = context.stats

    def names(self, records: Sequence[StreamRecord]) -> list[str]:
        """Every cache name the batch invalidates, each once, in first-seen order."""
        seen: dict[str, None] = {}
        for record in records:
            values = {name: _wire_scalar(v) for name, v in record.wire_keys.items()}
            for template in self._options.keys:
                seen.setdefault(template.format(**values), None)
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
                if channel:
                    for name in names:
                        pipe.publish(channel, name)
                results = pipe.execute()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise TransientError(
                    f"Redis unavailable: {exc}", consumer=self._context.route
                ) from exc
            if channel:
                self._stats.add("published", len(names))
            return int(sum(results[: len(names)]))

        retrying = Retrying(
            stop=stop_after_attempt(self._options.max_attempts)
            | stop_when_event_set(self._context.stop),
            wait=wait_random_exponential(multiplier=0.1, max=5),
            retry=retry_if_exception_type(TransientError),
            sleep=self._context.sleep,
            reraise=True,
        )
        return retrying(call)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


def build(options: Mapping[str, Any], context: ConsumerContext) -> CacheInvalidator:
    opts = CacheOptions.model_validate(options)
    valid = set(context.stream.key_attributes)
    for index, template in enumerate(opts.keys):
        try:
            fields = _fields(template)
        except ValueError as exc:
            raise ConfigError(
                f"{context.config_key}.options.keys.{index}", template, str(exc)
            ) from None
        unknown = [f for f in fields if f not in valid]
        if unknown or not fields:
            raise ConfigError(
                f"{context.config_key}.options.keys.{index}",
                template,
                f"fields must name key attributes of table {context.stream.table_name}: "
                + ", ".join("{" + k + "}" for k in context.stream.key_attributes),
            )
    if opts.redis_url == MEMORY:
        memory = context.memory_caches.setdefault(MEMORY, MemoryCache())
        if opts.channel:
            raise ConfigError(
                f"{context.config_key}.options.channel",
                opts.channel,
                'needs a Redis redis_url, not "memory"',
            )
        return CacheInvalidator(opts, context, None, memory)
    client = redis.Redis.from_url(
        opts.redis_url,
        socket_timeout=opts.socket_timeout_s,
        socket_connect_timeout=opts.socket_timeout_s,
        health_check_interval=30,
    )
    return CacheInvalidator(opts, context, client, None)
