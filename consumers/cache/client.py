"""An in-process cache for services, kept fresh by the cache consumer's invalidation channel.

The classic in-process cache holds entries for a few minutes and accepts that staleness.
This one holds them for long (``ttl_s``, an upper bound in case everything else fails) and
drops an entry as soon as dsp publishes its name on ``channel`` (``options.channel`` of a
``cache`` route), so an entry is stale only for the stream lag plus one pub/sub hop.

While the subscription is down the cache cannot know what changed: reads miss (and go to the
source) and, once subscribed again, the whole cache is cleared, because messages published
during the gap are lost (Redis pub/sub does not queue for absent subscribers)::

    users = SubscribedCache("redis://cache:6379/0", channel="dsp-invalidations")
    users.start()
    profile = users.get_or_load(f"user:{user_id}", lambda: load_user(user_id))
    ...
    users.close()
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import structlog

from processor.retries import QUICK, retrying

__all__ = ["SubscribedCache"]

log = structlog.get_logger()

V = TypeVar("V")
_CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class SubscribedCache:
    """Thread-safe TTL + LRU cache whose entries are dropped by names published on a channel."""

    def __init__(
        self,
        redis_url: str,
        channel: str,
        *,
        ttl_s: float = 3600.0,
        max_entries: int = 100_000,
        socket_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_invalidate: Callable[[str], None] | None = None,
    ) -> None:
        self._url = redis_url
        self.channel = channel
        self._ttl = ttl_s
        self._max = max_entries
        self._timeout = socket_timeout_s
        self._clock = clock
        self._on_invalidate = on_invalidate
        self._lock = threading.Lock()
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        #: loads in flight per name; an invalidation of the name voids them (see get_or_load)
        self._loading: dict[str, set[object]] = {}
        self._subscribed = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: redis.Redis | None = None
        self._sessions = 0
        self.stats = {"invalidations": 0, "dropped": 0, "clears": 0, "reconnects": 0}

    # -- the cache -----------------------------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def get(self, name: str, default: Any = None) -> Any:
        """The cached value, or ``default`` if absent, expired, or while unsubscribed."""
        if not self._subscribed.is_set():
            return default
        with self._lock:
            entry = self._data.get(name)
            if entry is None:
                return default
            expires, value = entry
            if self._clock() >= expires:
                del self._data[name]
                return default
            self._data.move_to_end(name)
            return value

    def set(self, name: str, value: Any) -> None:
        """Cache ``value``; ignored while unsubscribed (it could not be invalidated)."""
        if not self._subscribed.is_set():
            return
        with self._lock:
            self._store(name, value)

    def _store(self, name: str, value: Any) -> None:  # holds the lock
        self._data[name] = (self._clock() + self._ttl, value)
        self._data.move_to_end(name)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def get_or_load(self, name: str, load: Callable[[], V]) -> V:
        """The cached value, or ``load()``'s, cached unless ``name`` was invalidated while
        ``load`` ran (the value it read may predate the change: returned, never kept)."""
        missing = object()
        value = self.get(name, missing)
        if value is not missing:
            return value  # type: ignore[no-any-return]
        token = object()
        with self._lock:
            self._loading.setdefault(name, set()).add(token)
        loaded = missing
        try:
            loaded = load()
        finally:
            with self._lock:
                pending = self._loading.get(name)
                current = pending is not None and token in pending
                if pending is not None:
                    pending.discard(token)
                    if not pending:
                        del self._loading[name]
                if current and loaded is not missing and self._subscribed.is_set():
                    self._store(name, loaded)
        return loaded

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name, _ABSENT) is not _ABSENT

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._loading.clear()
        self.stats["clears"] += 1

    def _drop(self, name: str) -> None:
        with self._lock:
            dropped = self._data.pop(name, None) is not None
            self._loading.pop(name, None)  # loads in flight read the old value: void them
        self.stats["invalidations"] += 1
        self.stats["dropped"] += dropped
        if self._on_invalidate is not None:
            try:
                self._on_invalidate(name)
            except Exception:  # a hook's bug must not end the subscription
                log.exception("cache_client_hook_failed", channel=self.channel, name=name)

    # -- the subscription ----------------------------------------------------------------------

    def start(self, *, wait_s: float = 5.0) -> SubscribedCache:
        """Subscribe in a background thread; waits up to ``wait_s`` for the first subscription."""
        self._thread = threading.Thread(target=self._run, name="dsp-cache-client", daemon=True)
        self._thread.start()
        self._subscribed.wait(wait_s)
        return self

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._subscribed.clear()

    def wait_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s)

    def _run(self) -> None:
        reconnects = retrying(
            wait=QUICK,
            stop=self._closing,
            retry_on=lambda exc: isinstance(exc, _CONNECTION_ERRORS),
            sleep=self._pause,
            reraise=False,
            before_sleep=lambda state: log.warning(
                "cache_client_disconnected",
                channel=self.channel,
                attempt=state.attempt_number,
                error=str(state.outcome.exception()) if state.outcome else None,
            ),
        )
        while not self._closing.is_set():
            try:
                with contextlib.suppress(*_CONNECTION_ERRORS):  # raised only when closing
                    reconnects(self._session)
            except Exception:  # anything else: say so, subscribe again
                log.exception("cache_client_failed", channel=self.channel)
                self._pause(1.0)

    def _pause(self, seconds: float) -> None:
        self._closing.wait(seconds)

    def _session(self) -> None:
        """One subscription, until closed (returns) or the connection fails (raises)."""
        client = redis.Redis.from_url(
            self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
        )
        pubsub = client.pubsub(ignore_subscribe_messages=False)  # type: ignore[no-untyped-call, unused-ignore]
        try:
            pubsub.subscribe(self.channel)
            while not self._closing.is_set():
                message = pubsub.get_message(timeout=min(1.0, self._timeout / 2))
                if message is None:
                    pubsub.ping()  # notices a dead server within the socket timeout
                    continue
                kind = message.get("type")
                if kind == "subscribe":
                    self._on_subscribed()
                elif kind == "message":
                    data = message["data"]
                    self._drop(data.decode() if isinstance(data, bytes) else str(data))
        finally:
            self._subscribed.clear()
            pubsub.close()
            client.close()

    def _on_subscribed(self) -> None:
        self._sessions += 1
        if self._sessions > 1:
            # messages published while we were away are gone: nothing cached can be trusted
            self.clear()
            self.stats["reconnects"] += 1
            log.info("cache_client_reconnected", channel=self.channel, cleared=True)
        self._subscribed.set()


_ABSENT = object()
