"""Flow control for consumers that call other people's services (pure; clocks injected).

* :class:`CircuitBreaker` - per host: opens after ``threshold`` consecutive failures, lets one
  probe through after ``cool_down_s`` (half-open), closes again on a success.
* :class:`TokenBuckets` - per tenant: ``rate`` per second with bursts of ``burst``.
* :class:`FairScheduler` - which item key to deliver next: round-robin across tenants, one
  record of a key at a time and in order, skipping tenants that are out of tokens.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from processor.errors import CircuitOpen

__all__ = ["CircuitBreaker", "CircuitOpen", "FairScheduler", "TokenBuckets"]

T = TypeVar("T")
#: how often callers look again while a half-open breaker's probe is in flight
PROBE_POLL_S = 0.05
BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Thread-safe breaker for one host."""

    def __init__(
        self,
        host: str,
        *,
        threshold: int = 5,
        cool_down_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        self.host = host
        self._threshold = threshold
        self._cool_down = cool_down_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._cool_down:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go now (in half-open: one probe)."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half_open" and not self._probing:
                self._probing = True
                return
            assert self._opened_at is not None
            if state == "half_open":  # the probe is out: look again shortly
                raise CircuitOpen(
                    self.host, min(PROBE_POLL_S, self._cool_down), self._failures, probing=True
                )
            wait = self._opened_at + self._cool_down - self._clock()
            raise CircuitOpen(self.host, wait, self._failures)

    def success(self) -> None:
        with self._lock:
            was_open = self._opened_at is not None
            self._failures = 0
            self._opened_at = None
            self._probing = False
        if was_open and self._on_change:
            self._on_change(self.host, "closed")

    def failure(self) -> None:
        opened = False
        with self._lock:
            self._failures += 1
            if self._probing or (self._opened_at is None and self._failures >= self._threshold):
                opened = True
                self._opened_at = self._clock()
            self._probing = False
        if opened and self._on_change:
            self._on_change(self.host, "open")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


#: tenants whose buckets are kept; the least recently used beyond that are forgotten (a
#: forgotten tenant's next bucket starts full: at most one extra burst, never more)
MAX_TENANT_BUCKETS = 10_000


class TokenBuckets:
    """One token bucket per tenant (thread-safe). ``rate`` None means unlimited.

    At most ``max_tenants`` buckets are kept (least recently used forgotten), so tenants that
    come and go cannot grow memory without bound.
    """

    def __init__(
        self,
        rate: float | None,
        burst: float,
        *,
        overrides: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_tenants: int = MAX_TENANT_BUCKETS,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str | None, _Bucket] = OrderedDict()
        self._max = max_tenants

    def tenants(self) -> int:
        """How many tenants' buckets are held (at most ``max_tenants``)."""
        return len(self._buckets)

    def _rate_of(self, tenant: str | None) -> float | None:
        if tenant is not None and tenant in self._overrides:
            return self._overrides[tenant]
        return self._rate

    def try_take(self, tenant: str | None) -> float:
        """Take one token: 0.0 if taken, else the seconds until one will be there."""
        rate = self._rate_of(tenant)
        if rate is None:
            return 0.0
        burst = max(self._burst, 1.0)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(tenant)
            if bucket is None:
                bucket = self._buckets[tenant] = _Bucket(burst, now)
                if len(self._buckets) > self._max:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(tenant)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate


K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Lane(Generic[T]):
    items: deque[T] = field(default_factory=deque)
    busy: bool = False


class FairScheduler(Generic[K, T]):
    """Round-robin over tenants; within a key, one item at a time, in order (not thread-safe).

    ``add`` everything, then alternate ``next`` (what to start) and ``done`` (it finished:
    the key's next item becomes ready) or ``drop`` (it failed: the key's remaining items are
    returned and nothing more of that key is started).
    """

    def __init__(self, buckets: TokenBuckets | None = None) -> None:
        self._buckets = buckets
        self._lanes: dict[K, _Lane[T]] = {}
        self._tenant_of: dict[K, str | None] = {}
        self._ready: dict[str | None, deque[K]] = {}
        self._turns: deque[str | None] = deque()

    def add(self, key: K, tenant: str | None, item: T) -> None:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            self._tenant_of[key] = tenant
            self._make_ready(key)
        lane.items.append(item)

    def _make_ready(self, key: K) -> None:
        tenant = self._tenant_of[key]
        queue = self._ready.get(tenant)
        if queue is None:
            queue = self._ready[tenant] = deque()
            self._turns.append(tenant)
        queue.append(key)

    def next(self) -> tuple[K, T] | float | None:
        """The next (key, item) to start; or seconds to wait for a token; or None (nothing)."""
        wait: float | None = None
        for _ in range(len(self._turns)):
            tenant = self._turns[0]
            self._turns.rotate(-1)
            queue = self._ready[tenant]
            if not queue:
                continue
            delay = self._buckets.try_take(tenant) if self._buckets else 0.0
            if delay > 0:
                wait = delay if wait is None else min(wait, delay)
                continue
            key = queue.popleft()
            lane = self._lanes[key]
            lane.busy = True
            return key, lane.items[0]
        return wait

    def done(self, key: K) -> None:
        lane = self._lanes[key]
        lane.items.popleft()
        lane.busy = False
        if lane.items:
            self._make_ready(key)

    def drop(self, key: K) -> list[T]:
        lane = self._lanes[key]
        rest = list(lane.items)
        lane.items.clear()
        lane.busy = False
        return rest

    def drain(self) -> list[T]:
        """Everything not yet done (busy items included), clearing every key."""
        rest: list[T] = []
        for key in list(self._lanes):
            rest += self.drop(key)
        return rest

    def pending(self) -> bool:
        return any(lane.items for lane in self._lanes.values())
