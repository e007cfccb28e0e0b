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
that Redis channel, for services that embed :class:`consumers.cache.SubscribedCache`.
Redis unavailable is a transient error, retried here and then by the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from consumers.cache.client import SubscribedCache
from consumers.cache.invalidator import CacheInvalidator
from consumers.cache.options import MEMORY, CacheOptions, MemoryCache
from consumers.cache.templates import Template
from processor import ConfigError, ConsumerContext

__all__ = ["CacheInvalidator", "MemoryCache", "SubscribedCache", "Template", "build"]


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
