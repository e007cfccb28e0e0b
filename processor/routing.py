"""Routes and AWS Lambda-compatible event filter patterns (pure: no I/O).

A pattern is matched against the record in DynamoDB JSON, exactly as an event source mapping
sees it, e.g. ``{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S":
["active"]}}}}``. Every key of a pattern object must match (AND); a list of matchers matches
when any one does (OR); ``"$or": [p1, p2]`` matches when any sub-pattern does. When the
record's value is a list (e.g. an ``SS`` set), the matcher is tried against each element.

Matchers: exact strings, numbers (compared numerically), ``null``, ``true``/``false``;
``{"prefix": s}``, ``{"suffix": s}``, ``{"equals-ignore-case": s}``, ``{"wildcard": "a*b"}``,
``{"anything-but": v | [v, ...] | {"prefix": s} | {"suffix": s}}``,
``{"numeric": [op, n, (op, n)]}`` with ``=``, ``<``, ``<=``, ``>``, ``>=``, and
``{"exists": true|false}``. Numeric matchers accept JSON numbers and numeric strings (DynamoDB
``N`` values travel as strings).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["FilterPattern", "PatternError", "Route", "compile_filters"]

MAX_FILTERS_PER_ROUTE = 5
_NUMERIC_OPS = frozenset({"=", "<", "<=", ">", ">="})
_MISSING = object()

Matcher = Callable[[Any], bool]


class PatternError(ValueError):
    """A malformed pattern; ``fragment`` is the offending part, quoted in the message."""

    def __init__(self, message: str, fragment: Any, *, source_text: bool = False) -> None:
        self.fragment = fragment
        shown = fragment if source_text else json.dumps(fragment, default=str)
        super().__init__(f"{message}: {shown}")


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _wildcard_regex(pattern: str, fragment: Any) -> re.Pattern[str]:
    if "**" in pattern:
        raise PatternError("wildcard may not contain consecutive '*'", fragment)
    parts = []
    escaped = False
    for ch in pattern:
        if escaped:
            parts.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "*":
            parts.append(".*")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def _compile_numeric(spec: Any, fragment: Any) -> Matcher:
    if not isinstance(spec, list) or len(spec) not in (2, 4):
        raise PatternError("numeric takes [op, n] or [op, n, op, n]", fragment)
    checks: list[tuple[str, Decimal]] = []
    for i in range(0, len(spec), 2):
        op, bound = spec[i], spec[i + 1]
        if op not in _NUMERIC_OPS:
            raise PatternError(f"numeric operator must be one of {sorted(_NUMERIC_OPS)}", fragment)
        number = _as_number(bound) if not isinstance(bound, str) else None
        if number is None:
            raise PatternError("numeric bounds must be JSON numbers", fragment)
        checks.append((op, number))

    def match(value: Any) -> bool:
        number = _as_number(value)
        if number is None:
            return False
        for op, bound in checks:
            ok = (
                (op == "=" and number == bound)
                or (op == "<" and number < bound)
                or (op == "<=" and number <= bound)
                or (op == ">" and number > bound)
                or (op == ">=" and number >= bound)
            )
            if not ok:
                return False
        return True

    return match


def _compile_literal(literal: Any) -> Matcher:
    if literal is None:
        return lambda value: value is None
    if isinstance(literal, bool):
        return lambda value: value is literal
    if isinstance(literal, int | float):
        number = Decimal(str(literal))
        return lambda value: _as_number(value) == number and not isinstance(value, str)
    return lambda value: isinstance(value, str) and value == literal


def _compile_anything_but(spec: Any, fragment: Any) -> Matcher:
    if isinstance(spec, dict):
        inner = _compile_operator(spec, fragment)
        return lambda value: value is not _MISSING and not inner(value)
    values = spec if isinstance(spec, list) else [spec]
    for v in values:
        if isinstance(v, dict | list):
            raise PatternError(
                "anything-but takes a value, a list of values, or prefix/suffix", fragment
            )
    literals = [_compile_literal(v) for v in values]
    return lambda value: value is not _MISSING and not any(m(value) for m in literals)


def _compile_operator(spec: dict[str, Any], fragment: Any) -> Matcher:
    if len(spec) != 1:
        raise PatternError("a matcher object has exactly one operator", fragment)
    ((op, arg),) = spec.items()
    if op == "prefix":
        if isinstance(arg, dict) and set(arg) == {"equals-ignore-case"}:
            low = str(arg["equals-ignore-case"]).lower()
            return lambda v: isinstance(v, str) and v.lower().startswith(low)
        if not isinstance(arg, str):
            raise PatternError("prefix takes a string", fragment)
        return lambda v: isinstance(v, str) and v.startswith(arg)
    if op == "suffix":
        if isinstance(arg, dict) and set(arg) == {"equals-ignore-case"}:
            low = str(arg["equals-ignore-case"]).lower()
            return lambda v: isinstance(v, str) and v.lower().endswith(low)
        if not isinstance(arg, str):
            raise PatternError("suffix takes a string", fragment)
        return lambda v: isinstance(v, str) and v.endswith(arg)
    if op == "equals-ignore-case":
        if not isinstance(arg, str):
            raise PatternError("equals-ignore-case takes a string", fragment)
        low = arg.lower()
        return lambda v: isinstance(v, str) and v.lower() == low
    if op == "wildcard":
        if not isinstance(arg, str):
            raise PatternError("wildcard takes a string", fragment)
        regex = _wildcard_regex(arg, fragment)
        return lambda v: isinstance(v, str) and regex.match(v) is not None
    if op == "anything-but":
        return _compile_anything_but(arg, fragment)
    if op == "numeric":
        return _compile_numeric(arg, fragment)
    if op == "exists":
        if not isinstance(arg, bool):
            raise PatternError("exists takes true or false", fragment)
        return (lambda v: v is not _MISSING) if arg else (lambda v: v is _MISSING)
    raise PatternError(f"unknown matcher {op!r}", fragment)


def _compile_matchers(values: Any, path: str) -> Matcher:
    if not isinstance(values, list) or not values:
        raise PatternError(f"{path}: a pattern leaf must be a non-empty list of matchers", values)
    if all(isinstance(item, str) for item in values):  # the common case: exact strings
        allowed = frozenset(values)

        def match_strings(value: Any) -> bool:
            if isinstance(value, list):
                return any(isinstance(v, str) and v in allowed for v in value)
            return isinstance(value, str) and value in allowed

        return match_strings
    matchers: list[Matcher] = []
    for item in values:
        if isinstance(item, dict):
            matchers.append(_compile_operator(item, {path: values}))
        elif isinstance(item, list):
            raise PatternError(f"{path}: nested lists are not matchers", values)
        else:
            matchers.append(_compile_literal(item))

    # An exists:false matcher is the only one that may match a missing field.
    def match(value: Any) -> bool:
        if isinstance(value, list):
            return any(m(element) for element in value for m in matchers) or (
                not value and any(m(_MISSING) for m in matchers)
            )
        return any(m(value) for m in matchers)

    return match


def _any_of(alternatives: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    return lambda obj: any(a(obj) for a in alternatives)


def _nested(key: str, check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda obj: isinstance(obj, dict) and isinstance(obj.get(key), dict) and check(obj[key])


def _leaf(key: str, matcher: Matcher) -> Callable[[Any], bool]:
    return lambda obj: matcher(obj.get(key, _MISSING) if isinstance(obj, dict) else _MISSING)


def _compile_object(pattern: Any, path: str) -> Callable[[Any], bool]:
    if not isinstance(pattern, dict) or not pattern:
        raise PatternError(f"{path or 'pattern'}: must be a non-empty JSON object", pattern)
    checks: list[Callable[[Any], bool]] = []
    for key, sub in pattern.items():
        if key == "$or":
            if not isinstance(sub, list) or len(sub) < 2:
                raise PatternError("$or takes a list of at least two patterns", {key: sub})
            checks.append(_any_of([_compile_object(p, path) for p in sub]))
            continue
        sub_path = f"{path}.{key}" if path else key
        if isinstance(sub, dict):
            checks.append(_nested(key, _compile_object(sub, sub_path)))
        else:
            checks.append(_leaf(key, _compile_matchers(sub, sub_path)))
    if len(checks) == 1:
        return checks[0]

    def all_of(obj: Any) -> bool:
        return all(check(obj) for check in checks)

    return all_of


def _mentions_images(pattern: Any) -> bool:
    if isinstance(pattern, dict):
        return any(
            key in ("NewImage", "OldImage") or _mentions_images(value)
            for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        return any(_mentions_images(item) for item in pattern)
    return False


@dataclass(frozen=True, slots=True)
class FilterPattern:
    """One compiled filter pattern."""

    source: str
    _match: Callable[[Any], bool] = field(repr=False, compare=False)
    #: Whether the pattern looks into NewImage/OldImage (else images need not be decoded).
    needs_images: bool = True

    @classmethod
    def parse(cls, source: str) -> FilterPattern:
        try:
            pattern = json.loads(source)
        except json.JSONDecodeError as exc:
            raise PatternError(
                f"not valid JSON ({exc.msg} at column {exc.colno})", source, source_text=True
            ) from exc
        return cls(source, _compile_object(pattern, ""), _mentions_images(pattern))

    def matches(self, record: dict[str, Any]) -> bool:
        return self._match(record)


def compile_filters(sources: Sequence[str]) -> tuple[FilterPattern, ...]:
    """Compile up to five patterns; a record passes when any one matches."""
    if len(sources) > MAX_FILTERS_PER_ROUTE:
        raise PatternError(f"at most {MAX_FILTERS_PER_ROUTE} filters per route", list(sources))
    return tuple(FilterPattern.parse(s) for s in sources)


@dataclass(frozen=True, slots=True)
class Route:
    """A named path from the stream to one consumer, behind optional filters."""

    name: str
    consumer: Callable[..., Any]
    filters: tuple[FilterPattern, ...] = ()
    #: optional: called with every batch before filtering (a consumer watching its own config)
    watch: Callable[[Sequence[Any]], None] | None = None

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
