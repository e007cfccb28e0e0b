"""Which tenant a record belongs to: a regex over one key attribute (pure).

``[tenancy] attribute = "pk"`` and ``pattern = "^TENANT#(?P<tenant>[^#]+)"`` give
``TENANT#acme`` the tenant ``acme``; records whose key does not match have no tenant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from processor.records import StreamRecord

__all__ = ["TenantResolver"]


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
