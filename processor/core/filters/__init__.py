"""Event filter patterns with the semantics of AWS Lambda event filtering and EventBridge.

Both run AWS's open-source event-ruler; this package follows it operator for operator and is
checked against it by the conformance corpus in ``tests/unit/core/filters/``. A pattern is
matched against the record in DynamoDB JSON, exactly as an event source mapping sees it::

    {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S": ["active"]}}}}

Every key of an object must match (AND); a list of values matches when one does (OR);
``"$or": [p1, p2, ...]`` matches when one sub-pattern does. A pattern value is compared with
the event's *leaves* only (strings, numbers, booleans, null); arrays in the event match
when an element does.

One opt-in extension, per route (``filter_extensions = true``): ``numeric`` also compares
strings that hold numbers, as DynamoDB ``N`` values travel. AWS never matches those.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from processor.core.filters._compile import compile_pattern
from processor.core.filters._match import compile_rule
from processor.errors import PatternError

__all__ = ["MAX_FILTERS_PER_ROUTE", "FilterPattern", "PatternError", "compile_filters"]

#: Lambda's default quota of filters per event source mapping.
MAX_FILTERS_PER_ROUTE = 5


def _mentions_images(pattern: Any) -> bool:
    if isinstance(pattern, dict):
        return any(
            key in ("NewImage", "OldImage") or _mentions_images(value)
            for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        return any(_mentions_images(item) for item in pattern)
    return False


def _matcher(rules: list[Any]) -> Callable[[Any], bool]:
    matchers = [compile_rule(rule) for rule in rules]
    if len(matchers) == 1:
        return matchers[0]
    return lambda event: any(m(event) for m in matchers)


@dataclass(frozen=True, slots=True)
class FilterPattern:
    """One compiled filter pattern."""

    source: str
    _match: Callable[[Any], bool] = field(repr=False, compare=False)
    #: Whether the pattern looks into NewImage/OldImage (else images need not be decoded).
    needs_images: bool = True

    @classmethod
    def parse(cls, source: str, *, extensions: bool = False) -> FilterPattern:
        """Compile ``source``; a malformed pattern raises :class:`PatternError`."""
        rules = compile_pattern(source, extensions=extensions)
        return cls(source, _matcher(rules), _mentions_images(json.loads(source)))

    def matches(self, record: dict[str, Any]) -> bool:
        return self._match(record)


def compile_filters(
    sources: Sequence[str], *, extensions: bool = False
) -> tuple[FilterPattern, ...]:
    """Compile up to five patterns; a record passes when any one matches.

    A :class:`PatternError` from the n-th pattern says ``filter n``.
    """
    if len(sources) > MAX_FILTERS_PER_ROUTE:
        raise PatternError(f"at most {MAX_FILTERS_PER_ROUTE} filters per route, got {len(sources)}")
    compiled = []
    for n, source in enumerate(sources, 1):
        try:
            compiled.append(FilterPattern.parse(source, extensions=extensions))
        except PatternError as exc:
            if len(sources) == 1:
                raise
            numbered = PatternError(f"filter {n}: {exc}")
            numbered.path, numbered.fragment = exc.path, exc.fragment
            raise numbered from None
    return tuple(compiled)
