"""Routes: a named path from the stream to one consumer, behind optional filters (pure).

The filter language (AWS Lambda event filtering / EventBridge patterns) lives in
:mod:`processor.core.filters`; its names are re-exported here for existing imports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from processor.core.filters import (
    MAX_FILTERS_PER_ROUTE,
    FilterPattern,
    PatternError,
    compile_filters,
)

__all__ = ["MAX_FILTERS_PER_ROUTE", "FilterPattern", "PatternError", "Route", "compile_filters"]


@dataclass(frozen=True, slots=True)
class Route:
    """A named path from the stream to one consumer, behind optional filters."""

    name: str
    consumer: Callable[..., Any]
    filters: tuple[FilterPattern, ...] = ()
    #: optional: called with every batch before filtering (a consumer watching its own config)
    watch: Callable[[Sequence[Any]], None] | None = None
    #: a tumbling window of this many seconds: the consumer is ``handle(records, window)``
    #: returning the window's state (processor/core/windows.py)
    window_s: int | None = None

    def accepts(self, raw_record: dict[str, Any]) -> bool:
        return not self.filters or any(f.matches(raw_record) for f in self.filters)

    def select(self, records: Iterable[Any]) -> list[Any]:
        """The records (StreamRecords) this route accepts, in order."""
        if not self.filters:
            return list(records)
        images = any(f.needs_images for f in self.filters)
        if len(self.filters) == 1:
            match = self.filters[0]._match
            return [r for r in records if match(r.filter_view(images=images))]
        return [r for r in records if self.accepts(r.filter_view(images=images))]
