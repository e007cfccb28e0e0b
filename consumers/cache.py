"""Invalidate cache entries named after each changed item.

``options.keys = ["order:{pk}:{sk}", "user-by-email:{image.email}", ...]``: templates whose
fields are

* key attributes (their values as on the wire: strings, numbers as written, binary as base64);
* ``{tenant}`` (the record's tenant from ``[tenancy]``; a record without one skips the template);
* ``{new.ATTR}`` / ``{old.ATTR}``: an attribute of the new or old image, and ``{image.ATTR}``:
  of both - for caches keyed by a secondary attribute, so that when an email changes, the
  entries under the old and the new email are both invalidated. A template whose attribute is
  absent from an image gives no name for it.

Names are deleted from Redis at ``options.redis_url`` with one pipelined round trip of
single-key ``UNLINK`` commands per batch (``cluster = true`` uses a Redis Cluster client,
which groups them by node; no command ever names two keys), or from an in-process cache when
``redis_url = "memory"``. With ``options.channel`` each invalidated name is also published on
that Redis channel, for services that embed :class:`consumers.cache_client.SubscribedCache`.
Redis unavailable is a transient error, retried here and then by the engine.
"""

from __future__ import annotations

import string
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

__all__ = ["CacheInvalidator", "MemoryCache", "Template", "build"]

log = structlog.get_logger()

MEMORY = "memory"
_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError)


class CacheOptions(Options):
    keys: list[str] = Field(min_length=1)
    redis_url: str = MEMORY
    cluster: bool = False
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


def _plain_format(text: str, aliases: Mapping[str, str]) -> str:
    """``text`` with dotted fields ("new.email") renamed to plain ones, for str.format_map
    (which would read "new.email" as attribute "email" of "new")."""
    out = []
    for literal, name, spec, conversion in string.Formatter().parse(text):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            out.append(
                "{"
                + aliases.get(name, name)
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Template:
    """One key template, with what its fields need."""

    text: str
    keys: tuple[str, ...]
    images: tuple[str, ...]  # "new", "old" or both: one name per image that has the fields
    image_attributes: tuple[tuple[str, str], ...]  # (field alias, attribute name)
    tenant: bool
    format: str  # text with image fields renamed to their aliases

    @classmethod
    def parse(cls, text: str) -> Template:
        keys: list[str] = []
        attributes: list[str] = []
        images: set[str] = set()
        tenant = False
        for name in _fields(text):
            prefix, dot, attribute = name.partition(".")
            if name == "tenant":
                tenant = True
            elif dot and prefix in ("new", "old", "image") and attribute:
                images.update(("new", "old") if prefix == "image" else (prefix,))
                attributes.append(name)
            elif dot:
                raise ValueError(f"{{{name}}}: image fields are new.ATTR, old.ATTR or image.ATTR")
            else:
                keys.append(name)
        if not (keys or attributes or tenant):
            raise ValueError("needs at least one field")
        if len({a.split(".", 1)[0] for a in attributes}) > 1:
            raise ValueError("use one of new., old. or image. per template")
        # aliases start with NUL: no key attribute or {tenant} field is named like that
        aliases = {name: f"\x00{index}" for index, name in enumerate(dict.fromkeys(attributes))}
        return cls(
            text,
            tuple(keys),
            tuple(sorted(images)),
            tuple((alias, name.split(".", 1)[1]) for name, alias in aliases.items()),
            tenant,
            _plain_format(text, aliases),
        )

    def names(self, record: StreamRecord, keys: Mapping[str, str]) -> list[str]:
        values: dict[str, str] = dict(keys)
        if self.tenant:
            if record.tenant is None:
                return []
            values["tenant"] = record.tenant
        if not self.images:
            return [self.format.format_map(values)]
        names = []
        for which in self.images:
            image = record.wire_new_image if which == "new" else record.wire_old_image
            if image is None:
                continue
            found = dict(values)
            for alias, attribute in self.image_attributes:
                value = image.get(attribute)
                if value is None:
                    break
                found[alias] = _wire_scalar(value)
            else:
                names.append(self.format.format_map(found))
        return names


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
            values = {name: _wire_scalar(v) for name, v in record.wire_keys.items()}
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
    stream = context.stream
    for index, text in enumerate(opts.keys):
        key = f"{context.config_key}.options.keys.{index}"
        try:
            template = Template.parse(text)
        except ValueError as exc:
            raise ConfigError(key, text, str(exc)) from None
        unknown = [f for f in template.keys if f not in valid]
        if context.offline:  # the key schema and view type are known only online
            continue
        if unknown:
            raise ConfigError(
                key,
                text,
                f"{{{unknown[0]}}} is not a key attribute of table {stream.table_name}; fields "
                "are key attributes ("
                + ", ".join("{" + k + "}" for k in stream.key_attributes)
                + "), {tenant}, {new.ATTR}, {old.ATTR} or {image.ATTR}",
            )
        available = {"new": stream.has_new_images, "old": stream.has_old_images}
        if template.images and not any(available[w] for w in template.images):
            raise ConfigError(
                key,
                text,
                f"the stream's view type is {stream.view_type}: it has no "
                + " or ".join(f"{w} images" for w in template.images),
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
    client: redis.Redis | redis.RedisCluster
    if opts.cluster:
        client = redis.RedisCluster.from_url(
            opts.redis_url,
            socket_timeout=opts.socket_timeout_s,
            socket_connect_timeout=opts.socket_timeout_s,
        )
    else:
        client = redis.Redis.from_url(
            opts.redis_url,
            socket_timeout=opts.socket_timeout_s,
            socket_connect_timeout=opts.socket_timeout_s,
            health_check_interval=30,
        )
    return CacheInvalidator(opts, context, client, None)
