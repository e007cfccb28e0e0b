"""Who receives a record's webhook: subscriptions from configuration or from a DynamoDB table.

A subscription names a tenant (``*``: every tenant), the event names it wants (empty: all),
a URL (``{tenant}`` is filled in), an optional signing secret and whether it is active.

``TableSubscriptions`` reads a table whose items have the attributes ``tenant`` (S), ``url``
(S), and optionally ``events`` (SS, or L of S), ``secret`` (S), ``secrets`` (SS, or L of S:
several during a rotation) and ``active`` (BOOL, default true), through an in-process cache
with a TTL (ADR 0008). URLs in the table are written by tenants: every delivery to one goes
through the destination policy (:mod:`processor.webhooks.egress`). When the worker also reads that
table's stream, a change to a subscription item invalidates the cache at once, so the next
delivery sees it without waiting for the TTL.
"""

from __future__ import annotations

import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import structlog

from processor import DynamoDBTable, RecordError, StreamRecord
from processor.webhooks import check_url_template

__all__ = [
    "ANY_TENANT",
    "MissingTenant",
    "StaticSubscriptions",
    "Subscription",
    "SubscriptionSource",
    "TableSubscriptions",
    "template_fields",
]

log = structlog.get_logger()

ANY_TENANT = "*"


def template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


class MissingTenant(RecordError, ValueError):
    """A subscription's URL needs ``{tenant}`` and the record has none: it never will."""


@dataclass(frozen=True, slots=True)
class Subscription:
    tenant: str
    url: str
    #: signing secrets (several during a rotation); empty: unsigned
    secrets: tuple[str, ...] = ()
    events: frozenset[str] = frozenset()
    active: bool = True
    #: the URL is untrusted (a tenant wrote it, or a record fills in its host): every
    #: delivery goes through the destination policy (processor.webhooks.egress)
    guarded: bool = False

    @property
    def id(self) -> str:
        return f"{self.tenant}\x1f{self.url}"

    def wants(self, event_name: str) -> bool:
        return self.active and (not self.events or event_name in self.events)

    def url_for(self, tenant: str | None) -> str:
        """The URL with ``{tenant}`` filled in (percent-encoded); raises MissingTenant if it
        needs one."""
        if "{" not in self.url:
            return self.url
        if tenant is None:
            raise MissingTenant(f"URL {self.url!r} needs {{tenant}} but the record has none")
        return self.url.format(tenant=quote(tenant, safe=""))


class SubscriptionSource(Protocol):
    def lookup(self, tenant: str | None, event_name: str) -> list[Subscription]: ...


def _index(subscriptions: Iterable[Subscription]) -> dict[str, list[Subscription]]:
    index: dict[str, list[Subscription]] = {}
    for sub in subscriptions:
        if sub.active:
            index.setdefault(sub.tenant, []).append(sub)
    return index


def _lookup(
    index: Mapping[str, list[Subscription]], tenant: str | None, event_name: str
) -> list[Subscription]:
    found = [s for s in index.get(ANY_TENANT, ()) if s.wants(event_name)]
    if tenant is not None and tenant != ANY_TENANT:
        found += [s for s in index.get(tenant, ()) if s.wants(event_name)]
    return found


class StaticSubscriptions:
    """Subscriptions given in the configuration."""

    def __init__(self, subscriptions: Sequence[Subscription]) -> None:
        self.subscriptions = list(subscriptions)
        self._index = _index(subscriptions)

    def lookup(self, tenant: str | None, event_name: str) -> list[Subscription]:
        return _lookup(self._index, tenant, event_name)


def _text(value: Mapping[str, Any] | None) -> str | None:
    if not value:
        return None
    if "S" in value:
        return str(value["S"])
    return None


def parse_item(item: Mapping[str, Any]) -> Subscription:
    """One table item (DynamoDB JSON) as a Subscription; ValueError says what is wrong."""
    tenant = _text(item.get("tenant"))
    url = _text(item.get("url"))
    if not tenant or not url:
        raise ValueError("needs string attributes 'tenant' and 'url'")
    check_url_template(url)
    events_value = item.get("events") or {}
    if "SS" in events_value:
        events = frozenset(events_value["SS"])
    elif "L" in events_value:
        events = frozenset(str(v.get("S")) for v in events_value["L"])
    elif "S" in events_value:
        events = frozenset({events_value["S"]})
    else:
        events = frozenset()
    active = item.get("active", {"BOOL": True}).get("BOOL", True)
    return Subscription(tenant, url, _secrets(item), events, bool(active), guarded=True)


def _secrets(item: Mapping[str, Any]) -> tuple[str, ...]:
    """``secret`` (S) and ``secrets`` (SS, or L of S), in that order."""
    found = [s] if (s := _text(item.get("secret"))) else []
    many = item.get("secrets") or {}
    if "SS" in many:
        found += sorted(many["SS"])
    elif "L" in many:
        found += [str(v["S"]) for v in many["L"] if "S" in v]
    return tuple(found)


class TableSubscriptions:
    """Subscriptions read from a DynamoDB table, cached for ``ttl_s`` (thread-safe)."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        stats: Any = None,
        max_subscriptions: int = 100_000,
    ) -> None:
        self._max = max_subscriptions
        self._client = client
        self.table = table
        self._ttl = ttl_s
        self._clock = clock
        self._stats = stats
        self._lock = threading.Lock()
        self._index: dict[str, list[Subscription]] | None = None
        self._loaded_at = 0.0
        self.loads = 0

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")

    def lookup(self, tenant: str | None, event_name: str) -> list[Subscription]:
        return _lookup(self._current(), tenant, event_name)

    def _current(self) -> dict[str, list[Subscription]]:
        with self._lock:
            if self._index is not None and self._clock() - self._loaded_at < self._ttl:
                return self._index
            try:
                self._index = _index(self._scan())
            except Exception as exc:
                if self._index is None:
                    raise
                # keep serving what we had; look again after a short pause, not every call
                log.warning("subscriptions_refresh_failed", table=self.table, error=str(exc))
                self._loaded_at = self._clock() - self._ttl + min(self._ttl, 5.0)
                return self._index
            self._loaded_at = self._clock()
            self.loads += 1
            if self._stats is not None:
                self._stats.add("subscription_loads")
            return self._index

    def _scan(self) -> list[Subscription]:
        found: list[Subscription] = []
        for items in DynamoDBTable(self._client, self.table).scan_pages():
            for item in items:
                try:
                    found.append(parse_item(item))
                except ValueError as exc:
                    log.warning("subscription_item_invalid", table=self.table, error=str(exc))
            if len(found) > self._max:  # tenants write this table: memory stays bounded
                raise ValueError(
                    f"more than max_subscriptions ({self._max}) items; raise the option "
                    "if the table really holds that many"
                )
        log.info("subscriptions_loaded", table=self.table, subscriptions=len(found))
        return found

    def watch(self, records: Sequence[StreamRecord]) -> None:
        """Records of this table's own stream: a changed subscription item refreshes the cache."""
        for record in records:
            if record.table_name not in (None, self.table):
                return
            images = [record.wire_new_image, record.wire_old_image]
            if all(i is None for i in images) or any(i and "url" in i for i in images):
                log.info("subscriptions_changed", table=self.table, event_id=record.event_id)
                self.invalidate()
                return
