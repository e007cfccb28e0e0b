"""The cache consumer against a real Redis (the session's, see tests/conftest.py) and in-process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis

from consumers.cache import MemoryCache, build
from processor.core.records import StreamRecord
from processor.errors import ConfigError, TransientError
from processor.testing import make_record
from tests.conftest import REDIS_URL

from .helpers import context
from .redis_cluster import RedisCluster


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
            "redis_url": REDIS_URL,
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
    pubsub = redis_client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    consumer = build(
        {"keys": ["order:{pk}:{sk}"], "redis_url": REDIS_URL, "channel": channel},
        context(),
    )
    consumer([rec("a", "1"), rec("a", "1"), rec("b", "2")])
    got: list[str] = []
    deadline = time.monotonic() + 30
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


def test_templates_over_tenant_and_both_images_invalidate_old_and_new_names() -> None:
    """A changed email invalidates the entry under the old and under the new address;
    {tenant} comes from [tenancy]; a record without a tenant skips tenant templates."""
    memory: dict[str, Any] = {}
    consumer = build(
        {
            "keys": ["user:{tenant}:{sk}", "by-email:{image.email}", "new-only:{new.email}"],
            "redis_url": "memory",
        },
        context(memory=memory),
    )
    changed = make_record(
        {"pk": {"S": "TENANT#acme"}, "sk": {"S": "u1"}},
        event_name="MODIFY",
        new_image={"pk": {"S": "TENANT#acme"}, "sk": {"S": "u1"}, "email": {"S": "new@x"}},
        old_image={"pk": {"S": "TENANT#acme"}, "sk": {"S": "u1"}, "email": {"S": "old@x"}},
    )
    changed.tenant = "acme"
    removed = make_record(
        {"pk": {"S": "GLOBAL"}, "sk": {"S": "u2"}},
        event_name="REMOVE",
        old_image={"pk": {"S": "GLOBAL"}, "sk": {"S": "u2"}, "email": {"S": "gone@x"}},
    )
    assert consumer.names([changed, removed]) == [
        "user:acme:u1",
        "by-email:new@x",
        "by-email:old@x",
        "new-only:new@x",
        "by-email:gone@x",
    ]


@pytest.mark.parametrize(
    ("template", "view", "message"),
    [
        ("o:{email}", "NEW_AND_OLD_IMAGES", "not a key attribute"),
        ("o:{new.email}", "KEYS_ONLY", "no new images"),
        ("o:{old.email}", "NEW_IMAGE", "no old images"),
        ("o:{item.email}", "NEW_AND_OLD_IMAGES", "new.ATTR, old.ATTR or image.ATTR"),
        ("o:{new.a}:{old.b}", "NEW_AND_OLD_IMAGES", "one of new., old. or image."),
        ("constant", "NEW_AND_OLD_IMAGES", "at least one field"),
    ],
)
def test_bad_templates_name_the_key(template: str, view: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        build({"keys": ["o:{pk}", template]}, context(view=view))
    assert raised.value.key == "routes.0.options.keys.1"


def test_redis_cluster_invalidation_spans_slots_and_nodes(tmp_path: Path, unique: str) -> None:
    """Against a real three-master cluster: names in many slots on every node are unlinked in
    one pipelined call (no multi-key command crosses a slot) and published."""
    with RedisCluster(tmp_path) as cluster:
        client = redis.RedisCluster.from_url(cluster.url)
        names = [f"{unique}:o:t{i}:1" for i in range(30)]
        for name in names:
            client.set(name, "v")
        slots = {client.keyslot(n) for n in names}  # type: ignore[no-untyped-call, unused-ignore]
        nodes = {client.get_node_from_key(n).name for n in names}  # type: ignore[no-untyped-call, unused-ignore]
        assert len(slots) > 10
        assert len(nodes) == 3
        subscriber = redis.Redis(port=cluster.ports[1])  # PUBLISH reaches every node
        pubsub = subscriber.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
        pubsub.subscribe("inval")
        pubsub.get_message(timeout=1)
        ctx = context()
        consumer = build(
            {
                "keys": [f"{unique}:o:{{pk}}:{{sk}}"],
                "redis_url": cluster.url,
                "cluster": True,
                "channel": "inval",
            },
            ctx,
        )
        consumer([rec(f"t{i}", "1") for i in range(30)])
        assert not any(client.exists(n) for n in names)
        assert ctx.stats["entries_removed"] == 30
        got: list[str] = []
        deadline = time.monotonic() + 30
        while len(got) < 30 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message and message["type"] == "message":
                got.append(message["data"].decode())
        assert got == names
        consumer.close()
        pubsub.close()
        client.close()
