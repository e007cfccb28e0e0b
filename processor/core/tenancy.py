"""Which tenant a record belongs to: a regex over one key attribute (pure).

``[tenancy] attribute = "pk"`` and ``pattern = "^TENANT#(?P<tenant>[^#]+)"`` give
``TENANT#acme`` the tenant ``acme``; records whose key does not match have no tenant, and
``[tenancy] missing`` decides what happens to them: ``process`` (deliver with tenant None),
``skip`` (count and drop) or ``dead_letter`` (store with the reason, deliver nothing).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from processor.core.records import StreamRecord

__all__ = ["NO_TENANT", "MissingTenant", "Tenancy", "TenantResolver", "TenantStats"]

MissingTenant = Literal["process", "skip", "dead_letter"]

#: Label used for records without a tenant in metrics and tables.
NO_TENANT = "-"


#: distinct key values whose tenant is remembered (items of one tenant share a partition key)
_CACHE_LIMIT = 65536


@dataclass(frozen=True, slots=True)
class TenantResolver:
    attribute: str
    pattern: re.Pattern[str]
    _cache: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(cls, attribute: str, pattern: str) -> TenantResolver:
        return cls(attribute, re.compile(pattern))

    def tenant_of(self, record: StreamRecord) -> str | None:
        value = record.wire_keys.get(self.attribute)
        if not value:
            return None
        for raw in value.values():  # one {type: value} pair
            text = raw if isinstance(raw, str) else str(raw)
            try:
                return self._cache[text]
            except KeyError:
                return self._resolve(text)
        return None

    def _resolve(self, text: str) -> str | None:
        match = self.pattern.search(text)
        tenant = None
        if match is not None:
            tenant = match.group("tenant") if "tenant" in self.pattern.groupindex else match[0]
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[text] = tenant
        return tenant


@dataclass(frozen=True, slots=True)
class Tenancy:
    """The resolver plus the policy for records without a tenant."""

    resolver: TenantResolver
    missing: MissingTenant = "process"

    def assign(
        self, records: Sequence[StreamRecord]
    ) -> tuple[list[StreamRecord], list[StreamRecord]]:
        """Set ``record.tenant`` on each; returns (to deliver, without a tenant to set aside).

        With ``missing = "process"`` nothing is set aside.
        """
        tenant_of = self.resolver.tenant_of
        keep: list[StreamRecord] = []
        aside: list[StreamRecord] = []
        process_all = self.missing == "process"
        for record in records:
            tenant = record.tenant = tenant_of(record)
            (keep if tenant is not None or process_all else aside).append(record)
        return keep, aside


#: the label value that stands for every tenant past the labelled ones
OTHER_TENANTS = "other"
#: how many tenants get a label of their own by default ([observability] max_tenant_labels)
MAX_TENANT_LABELS = 100


class TenantStats:
    """Thread-safe record counts per (route, tenant, outcome), exported as a metric.

    Tenants are untrusted and unbounded in number; a metric label must not be. The first
    ``max_tenants`` tenants seen keep a label of their own for the life of the process (a
    label never moves, so counters stay monotonic); every later tenant is counted as
    ``other``.
    """

    def __init__(self, max_tenants: int = MAX_TENANT_LABELS) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._labelled: set[str] = {NO_TENANT}
        self._max = max_tenants

    def _label(self, tenant: str) -> str:
        if tenant in self._labelled:
            return tenant
        if len(self._labelled) <= self._max:
            self._labelled.add(tenant)
            return tenant
        return OTHER_TENANTS

    def add_records(self, route: str, records: Sequence[StreamRecord], outcome: str) -> None:
        per_tenant = Counter(r.tenant or NO_TENANT for r in records)
        with self._lock:
            for tenant, count in per_tenant.items():
                self._counts[(route, self._label(tenant), outcome)] += count

    def add(self, route: str, tenant: str, outcome: str, count: int = 1) -> None:
        with self._lock:
            self._counts[(route, self._label(tenant), outcome)] += count

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)

    def get(self, route: str, tenant: str, outcome: str) -> int:
        with self._lock:
            return self._counts[(route, tenant, outcome)]
