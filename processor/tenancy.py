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
from dataclasses import dataclass
from typing import Literal

from processor.records import StreamRecord

__all__ = ["NO_TENANT", "MissingTenant", "Tenancy", "TenantResolver", "TenantStats"]

MissingTenant = Literal["process", "skip", "dead_letter"]

#: Label used for records without a tenant in metrics and tables.
NO_TENANT = "-"


@dataclass(frozen=True, slots=True)
class TenantResolver:
    attribute: str
    pattern: re.Pattern[str]

    @classmethod
    def from_settings(cls, attribute: str, pattern: str) -> TenantResolver:
        return cls(attribute, re.compile(pattern))

    def tenant_of(self, record: StreamRecord) -> str | None:
        value = record.wire_keys.get(self.attribute)
        if not value:
            return None
        ((_, raw),) = value.items()
        match = self.pattern.search(str(raw))
        if match is None:
            return None
        return match.group("tenant") if "tenant" in match.groupdict() else match.group(0)


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


class TenantStats:
    """Thread-safe record counts per (route, tenant, outcome), exported as a metric."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def add_records(self, route: str, records: Sequence[StreamRecord], outcome: str) -> None:
        per_tenant = Counter(r.tenant or NO_TENANT for r in records)
        with self._lock:
            for tenant, count in per_tenant.items():
                self._counts[(route, tenant, outcome)] += count

    def add(self, route: str, tenant: str, outcome: str, count: int = 1) -> None:
        with self._lock:
            self._counts[(route, tenant, outcome)] += count

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)

    def get(self, route: str, tenant: str, outcome: str) -> int:
        with self._lock:
            return self._counts[(route, tenant, outcome)]
