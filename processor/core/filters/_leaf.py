"""Leaf tests: one compiled matcher per entry of a pattern's value list (pure: no I/O).

A leaf test receives one leaf value of the event: ``str``, ``bool``, ``None`` or a number
(``int``/``float``, as JSON numbers decode). Objects and arrays are never leaves; the caller
walks them. The semantics follow AWS's event-ruler, which Lambda event filtering and
EventBridge share:

- strings and numbers never equal each other (``"300"`` is not ``300``);
- numbers compare by value when both sides are exactly representable as an IEEE double
  (``300`` equals ``3e2`` and ``300.0``), otherwise by their text;
- ``equals-ignore-case`` lets each pattern character stand for itself, its lower case or its
  upper case (``"ß"`` matches ``"SS"``; the event's characters are not folded);
- ``anything-but`` of anything matches every leaf the inner matcher does not match (a
  number, ``null`` and ``true`` are all "anything but" a string).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "JsonNumber",
    "LeafTest",
    "any_of",
    "comparable",
    "equals_literal",
    "ignore_case",
    "in_network",
    "negate",
    "numeric_range",
    "prefix",
    "suffix",
    "wildcard",
]

LeafTest = Callable[[Any], bool]


class JsonNumber(str):
    """A number read from a pattern, kept as its JSON text (exactness decides validity)."""

    __slots__ = ()


def comparable(text: str) -> float | None:
    """The number as a double when the double is exactly the number, else ``None``.

    event-ruler compares numbers through their IEEE double and refuses (in patterns) or
    ignores (in events) a number whose double is not exactly it: ``0.30000000000000001``.
    """
    try:
        exact = Decimal(text)
        value = float(text)
    except (InvalidOperation, ValueError):
        return None
    if not math.isfinite(value):
        return None
    return value if Decimal(repr(value)) == exact else None


def _event_number(value: Any) -> float | None:
    if type(value) is int:
        return comparable(str(value)) if abs(value) > 2**53 else float(value)
    if type(value) is float:
        return value if math.isfinite(value) else None
    return None


def _number_text(value: Any) -> str | None:
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return repr(value)
    return None


def equals_literal(literal: Any) -> LeafTest:
    """An exact value: string, number, ``null``, ``true`` or ``false``."""
    if literal is None:
        return lambda v: v is None
    if literal is True:
        return lambda v: v is True
    if literal is False:
        return lambda v: v is False
    if isinstance(literal, JsonNumber):
        number = comparable(literal)
        text = str(literal)
        if number is None:
            return lambda v: _number_text(v) == text
        return lambda v: _event_number(v) == number or _number_text(v) == text
    string = str(literal)
    return lambda v: type(v) is str and v == string


def any_of(tests: list[LeafTest]) -> LeafTest:
    """Matches when one of ``tests`` does (a pattern's value list is an OR)."""
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(t(v) for t in tests)


def strings_in(strings: frozenset[str]) -> LeafTest:
    """The common case, a list of exact strings: one set lookup."""
    return lambda v: type(v) is str and v in strings


def negate(test: LeafTest) -> LeafTest:
    """``anything-but``: every leaf that ``test`` does not match."""
    return lambda v: not test(v)


def prefix(text: str) -> LeafTest:
    return lambda v: type(v) is str and v.startswith(text)


def suffix(text: str) -> LeafTest:
    return lambda v: type(v) is str and v.endswith(text)


def _case_regex(text: str) -> str:
    parts = []
    for ch in text:
        forms = sorted({ch, ch.lower(), ch.upper()}, key=len, reverse=True)
        parts.append("(?:" + "|".join(re.escape(f) for f in forms) + ")")
    return "".join(parts)


def ignore_case(text: str, *, anchor: str = "whole") -> LeafTest:
    """``equals-ignore-case``, or its ``prefix``/``suffix`` forms (``anchor``)."""
    regex = _case_regex(text)
    if anchor == "prefix":
        compiled = re.compile(regex, re.DOTALL)
    elif anchor == "suffix":
        compiled = re.compile("(?s:.*)" + regex + r"\Z")
    else:
        compiled = re.compile(regex + r"\Z", re.DOTALL)
    if text.isascii():
        low = text.lower()
        n = len(text)
        if anchor == "prefix":
            ascii_test: LeafTest = lambda v: v[:n].lower() == low  # noqa: E731
        elif anchor == "suffix":
            ascii_test = lambda v: len(v) >= n and v[len(v) - n :].lower() == low  # noqa: E731
        else:
            ascii_test = lambda v: len(v) == n and v.lower() == low  # noqa: E731
        return lambda v: (
            type(v) is str and (ascii_test(v) if v.isascii() else compiled.match(v) is not None)
        )
    return lambda v: type(v) is str and compiled.match(v) is not None


def wildcard_regex(text: str) -> re.Pattern[str]:
    """``*`` matches any run of characters; ``\\*`` is a star and ``\\\\`` a backslash.

    Raises ``ValueError`` (with event-ruler's wording) for ``**`` and any other escape.
    """
    parts: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in "*\\":
                raise ValueError(f"invalid escape character at position {i}")
            parts.append(re.escape(text[i + 1]))
            i += 2
            continue
        if ch == "*":
            if i + 1 < len(text) and text[i + 1] == "*":
                raise ValueError(f"consecutive wildcard characters at position {i}")
            parts.append(".*")
        else:
            parts.append(re.escape(ch))
        i += 1
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def wildcard(text: str) -> LeafTest:
    regex = wildcard_regex(text)
    return lambda v: type(v) is str and regex.match(v) is not None


def in_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> LeafTest:
    """``cidr``: a string leaf that is an IP address inside ``network``."""

    def test(v: Any) -> bool:
        if type(v) is not str:
            return False
        try:
            address = ipaddress.ip_address(v)
        except ValueError:
            return False
        return address.version == network.version and address in network

    return test


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def numeric_range(checks: list[tuple[str, float, Decimal]], *, strings: bool) -> LeafTest:
    """``numeric``: JSON number leaves within every bound of ``checks``.

    With ``strings`` (the opt-in extension) a string leaf holding a number, as DynamoDB's
    ``N`` values travel, is compared exactly (as a Decimal) too.
    """
    doubles = [(_COMPARE[op], bound) for op, bound, _ in checks]
    exact = [(_COMPARE[op], bound) for op, _, bound in checks]

    def test(v: Any) -> bool:
        if type(v) is str:
            if not strings:
                return False
            try:
                number = Decimal(v)
            except InvalidOperation:
                return False
            return number.is_finite() and all(cmp(number, b) for cmp, b in exact)
        value = _event_number(v)
        return value is not None and all(cmp(value, b) for cmp, b in doubles)

    return test
