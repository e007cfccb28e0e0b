"""The embedded cache client: invalidations from the cache consumer, and a Redis restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from consumers.cache import SubscribedCache, build
from processor.testing import make_record
from tests.conftest import REDIS_URL

from .helpers import context


def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class PrivateRedis:
    """A redis-server of this test's own on a free port, so it can be stopped and restarted."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is needed (this machine kind has it)")
        self._process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        assert eventually(lambda: _pings(client)), "private redis-server did not start"
        client.close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_entries_are_dropped_when_the_consumer_invalidates_them(unique: str) -> None:
    channel = f"inval-{unique}"
    cache = SubscribedCache(REDIS_URL, channel).start()
    try:
        assert cache.subscribed
        for name in ("order:a:1", "order:b:2", "order:c:3"):
            cache.set(name, {"cached": name})
        consumer = build(
            {"keys": ["order:{pk}:{sk}"], "redis_url": REDIS_URL, "channel": channel}, context()
        )
        consumer(
            [
                make_record({"pk": {"S": "a"}, "sk": {"S": "1"}}),
                make_record({"pk": {"S": "b"}, "sk": {"S": "2"}}),
            ]
        )
        assert eventually(lambda: "order:a:1" not in cache and "order:b:2" not in cache)
        assert cache.get("order:c:3") == {"cached": "order:c:3"}
        assert cache.stats["dropped"] == 2
        consumer.close()
    finally:
        cache.close()


def test_ttl_and_size_bound() -> None:
    now = [0.0]
    cache = SubscribedCache("redis://unused", "c", ttl_s=10, max_entries=2, clock=lambda: now[0])
    cache._subscribed.set()  # as if subscribed; the Redis side is covered by the other tests
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.set("c", 3)
    assert "b" not in cache
    assert cache.get_or_load("a", lambda: 99) == 1
    now[0] = 10
    assert cache.get("a") is None  # expired
    assert cache.get_or_load("a", lambda: 99) == 99


def test_after_a_redis_restart_it_reconnects_and_clears(
    private_redis: PrivateRedis, unique: str
) -> None:
    """While Redis is down reads miss; after it is back the client resubscribes and clears
    (it may have missed invalidations), and invalidations work again."""
    channel = f"inval-{unique}"
    cache = SubscribedCache(private_redis.url, channel, socket_timeout_s=0.5).start()
    try:
        assert cache.subscribed
        cache.set("user:1", "Ada")
        cache.set("user:2", "Grace")
        assert cache.get("user:1") == "Ada"

        private_redis.stop()
        assert eventually(lambda: not cache.subscribed)
        assert cache.get("user:2") is None  # cannot be trusted while deaf
        cache.set("user:3", "ignored while unsubscribed")

        private_redis.start()
        assert cache.wait_subscribed(15)
        assert len(cache) == 0
        assert cache.stats["clears"] >= 1
        assert cache.stats["reconnects"] >= 1

        cache.set("user:1", "Ada Lovelace")
        publisher = redis.Redis.from_url(private_redis.url)
        publisher.publish(channel, "user:1")
        publisher.close()
        assert eventually(lambda: "user:1" not in cache)
    finally:
        cache.close()


def test_an_invalidation_during_a_load_is_not_undone_by_the_load(unique: str) -> None:
    """get_or_load: when the name is invalidated while the loader runs, the (now stale)
    loaded value is returned to this caller but not cached for the TTL."""
    publisher = redis.Redis.from_url(REDIS_URL)
    cache = SubscribedCache(REDIS_URL, f"inval-{unique}").start()
    try:
        assert cache.wait_subscribed(5)

        def load_while_the_row_changes() -> str:
            before = cache.stats["invalidations"]
            publisher.publish(f"inval-{unique}", "user:1")  # the write lands mid-load
            assert eventually(lambda: cache.stats["invalidations"] > before)
            return "value read before the write"

        assert cache.get_or_load("user:1", load_while_the_row_changes) == (
            "value read before the write"
        )
        assert "user:1" not in cache  # the next reader loads afresh
        assert cache.get_or_load("user:1", lambda: "fresh") == "fresh"
        assert cache.get("user:1") == "fresh"
    finally:
        cache.close()


def test_the_listener_survives_an_error_that_is_not_a_connection_error(unique: str) -> None:
    """A failing on_invalidate hook is logged; the subscription stays up and later
    invalidations still drop their entries."""
    publisher = redis.Redis.from_url(REDIS_URL)
    calls: list[str] = []

    def hook(name: str) -> None:
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("a hook bug")

    cache = SubscribedCache(REDIS_URL, f"survive-{unique}", on_invalidate=hook).start()
    try:
        assert cache.wait_subscribed(5)
        cache.set("a", 1)
        cache.set("b", 2)
        publisher.publish(f"survive-{unique}", "a")
        assert eventually(lambda: calls == ["a"])
        publisher.publish(f"survive-{unique}", "b")
        assert eventually(lambda: calls == ["a", "b"])
        assert cache.subscribed
        assert "a" not in cache
        assert "b" not in cache
    finally:
        cache.close()
