"""The cache consumer against the real Redis on 127.0.0.1:6379 and in-process."""

from __future__ import annotations

import time

import redis

from consumers.cache import MemoryCache, build
from processor.errors import TransientError
from processor.records import StreamRecord
from processor.testing import make_record

from .helpers import context


def rec(pk: str, sk: str, event: str = "MODIFY") -> StreamRecord:
    return make_record({"pk": {"S": pk}, "sk": {"S": sk}}, event_name=event)


def test_redis_entries_of_changed_keys_are_unlinked_and_others_kept(
    redis_client: redis.Redis, unique: str
) -> None:
    """Every template of every changed key is deleted; unrelated names stay."""
    names = {f"{unique}:o:a:1", f"{unique}:list:a", f"{unique}:o:b:2", f"{unique}:o:c:3"}
    redis_client.mset(dict.fromkeys(names, "v"))
    consumer = build(
        {
            "keys": [f"{unique}:o:{{pk}}:{{sk}}", f"{unique}:list:{{pk}}"],
            "redis_url": "redis://127.0.0.1:6379/0",
        },
        context(),
    )
    consumer([rec("a", "1"), rec("b", "2"), rec("a", "1", "REMOVE")])
    assert not redis_client.exists(f"{unique}:o:a:1", f"{unique}:list:a", f"{unique}:o:b:2")
    assert redis_client.exists(f"{unique}:o:c:3")
    consumer.close()


def test_invalidated_names_are_published_on_the_channel(
    redis_client: redis.Redis, unique: str
) -> None:
    """With a channel, each invalidated name is published once per batch."""
    channel = f"inval-{unique}"
    pubsub = redis_client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    consumer = build(
        {"keys": ["order:{pk}:{sk}"], "redis_url": "redis://127.0.0.1:6379/0", "channel": channel},
        context(),
    )
    consumer([rec("a", "1"), rec("a", "1"), rec("b", "2")])
    got: list[str] = []
    deadline = time.monotonic() + 3
    while len(got) < 2 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            got.append(message["data"].decode())
    assert got == ["order:a:1", "order:b:2"]
    pubsub.close()


def test_redis_down_is_a_transient_error() -> None:
    """An unreachable Redis raises TransientError after the consumer's retries."""
    sleeps: list[float] = []
    consumer = build(
        {
            "keys": ["o:{pk}"],
            "redis_url": "redis://127.0.0.1:1/0",
            "max_attempts": 2,
            "socket_timeout_s": 0.2,
        },
        context(sleeps=sleeps),
    )
    try:
        consumer([rec("a", "1")])
    except TransientError:
        pass
    else:
        raise AssertionError("expected TransientError")
    assert len(sleeps) == 1


def test_memory_cache_is_invalidated_in_process() -> None:
    """redis_url = "memory" deletes from the process's own cache."""
    caches: dict[str, object] = {}
    consumer = build({"keys": ["o:{pk}:{sk}"]}, context(memory=caches))
    cache = caches["memory"]
    assert isinstance(cache, MemoryCache)
    cache.set("o:a:1", 1)
    cache.set("o:z:9", 1)
    consumer([rec("a", "1")])
    assert "o:a:1" not in cache
    assert "o:z:9" in cache
