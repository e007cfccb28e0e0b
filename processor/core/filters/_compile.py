"""Pattern text to rules: parsing, validation and compilation (pure: no I/O).

A pattern compiles to one or more *rules* (``$or`` expands into alternatives, as event-ruler
does); a rule is a tuple of :class:`Condition`, one per field path, sorted by the path's
dotted name (event-ruler's order, which decides how ``exists: false`` meets arrays).
Every error is a :class:`PatternError` naming the path inside the pattern, quoting the bad
fragment and saying what would be valid.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NoReturn

from processor.core.filters import _leaf
from processor.core.filters._leaf import JsonNumber, LeafTest
from processor.errors import PatternError

__all__ = ["MAX_PATTERN_CHARS", "MAX_RULES", "Condition", "PatternError", "compile_pattern"]

#: Lambda's limit on one filter pattern (``Filter.Pattern``: 4,096 characters).
MAX_PATTERN_CHARS = 4096
#: How many alternatives ``$or`` may expand to in one pattern (ours; bounds compile time).
MAX_RULES = 256
#: Field names event-ruler refuses inside ``$or`` (they read as operators there).
RESERVED_IN_OR = frozenset(
    {
        "exactly", "equals-ignore-case", "prefix", "suffix", "anything-but", "exists",
        "wildcard", "numeric", "cidr", "=", "<", "<=", ">", ">=", "regex", "not-wildcard",
        "not-equals-ignore-case", "date-after", "date-on-or-after", "date-before",
        "date-on-or-before", "in-date-range", "ip-address-in-range", "ip-address-not-in-range",
    }
)  # fmt: skip
_LOWER = frozenset({">", ">="})
_UPPER = frozenset({"<", "<="})


@dataclass(frozen=True, slots=True)
class Condition:
    """One field of a rule: the leaves at ``path`` must pass ``test``, or be absent."""

    path: tuple[str, ...]
    test: LeafTest | None
    absent_ok: bool
    #: set when every value is an exact string (the common case: one set lookup)
    strings: frozenset[str] | None = None


def _fail(message: str, fragment: Any, path: tuple[str, ...]) -> NoReturn:
    raise PatternError(message, fragment, path=".".join(path) or "the top level")


def _merge(key: str, first: Any, second: Any) -> Any:
    """A key repeated in one object, as event-ruler compiles it: object values add their
    paths up (the AWS docs' "Boolean AND" example writes ``"dynamodb"`` twice); the same leaf
    constrained twice is refused (event-ruler silently keeps the last)."""
    if isinstance(first, dict) and isinstance(second, dict):
        merged = dict(first)
        for inner, value in second.items():
            merged[inner] = _merge(inner, merged[inner], value) if inner in merged else value
        return merged
    if isinstance(first, list) and isinstance(second, list):
        instead = f"give its values as one list: {_text({key: first + second})}"
    else:
        instead = "give it one value: a list of values, or one object of fields"
    raise PatternError(
        f"the field {json.dumps(key)} is constrained twice; {instead} (a key may repeat only "
        "when both of its values are objects: their fields add up, as in AWS's Boolean AND "
        "example)"
    )


def _text(value: Any) -> str:
    """Pattern JSON as written: numbers are kept as their text (``JsonNumber``)."""
    if isinstance(value, JsonNumber):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return json.dumps(value)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        seen[key] = _merge(key, seen[key], value) if key in seen else value
    return seen


def _no_constant(name: str) -> NoReturn:
    raise PatternError(f"{name} is not a JSON number; use a finite number")


def parse_json(source: str) -> Any:
    """JSON with numbers kept as text and duplicate keys refused."""
    if len(source) > MAX_PATTERN_CHARS:
        raise PatternError(
            f"a pattern has at most {MAX_PATTERN_CHARS} characters (AWS's limit), "
            f"this one has {len(source)}"
        )
    try:
        return json.loads(
            source,
            object_pairs_hook=_pairs,
            parse_int=JsonNumber,
            parse_float=JsonNumber,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise PatternError(
            f"not valid JSON ({exc.msg} at column {exc.colno})", source, source_text=True
        ) from None
    except RecursionError:
        raise PatternError("nested too deeply") from None


def compile_pattern(source: str, *, extensions: bool = False) -> list[tuple[Condition, ...]]:
    """Compile one pattern's JSON text into its rules (a record matches if any rule does)."""
    pattern = parse_json(source)
    if not isinstance(pattern, dict):
        _fail("a pattern is a JSON object", pattern, ())
    rules = _object(pattern, (), in_or=False, extensions=extensions)
    compiled = []
    for rule in rules:
        paths = [c.path for c in rule]
        for path in paths:
            if paths.count(path) > 1:
                _fail("this field is constrained twice in one alternative", None, path)
        compiled.append(tuple(sorted(rule, key=lambda c: ".".join(c.path))))
    return compiled


def _object(
    node: Any, path: tuple[str, ...], *, in_or: bool, extensions: bool
) -> list[list[Condition]]:
    if not isinstance(node, dict) or not node:
        _fail("must be a non-empty JSON object", node, path)
    rules: list[list[Condition]] = [[]]
    for key, sub in node.items():
        if key == "$or" and not isinstance(sub, dict):  # an object under "$or" is a field
            if not isinstance(sub, list) or len(sub) < 2:
                _fail("$or takes a list of at least two objects", {key: sub}, path)
            alternatives = []
            for option in sub:
                if not isinstance(option, dict):
                    _fail("$or takes a list of at least two objects", {key: sub}, path)
                alternatives.extend(_object(option, path, in_or=True, extensions=extensions))
            rules = [r + a for r in rules for a in alternatives]
        else:
            here = (*path, key)
            if in_or and key in RESERVED_IN_OR:
                _fail("an operator name cannot be a field name inside $or", key, here)
            if isinstance(sub, dict):
                nested = _object(sub, here, in_or=in_or, extensions=extensions)
                rules = [r + n for r in rules for n in nested]
            elif isinstance(sub, list):
                condition = _value_list(sub, here, extensions)
                rules = [[*r, condition] for r in rules]
            else:
                _fail("a field's pattern is an object or a list of values", sub, here)
        if len(rules) > MAX_RULES:
            _fail(f"$or expands to more than {MAX_RULES} alternatives", None, path)
    return rules


def _value_list(values: list[Any], path: tuple[str, ...], extensions: bool) -> Condition:
    if not values:
        _fail("a list of values may not be empty", values, path)
    tests: list[LeafTest] = []
    strings: list[str] = []
    absent_ok = False
    for item in values:
        if isinstance(item, dict):
            if item == {"exists": False}:
                absent_ok = True
                continue
            tests.append(_operator(item, path, extensions))
        elif isinstance(item, list):
            _fail("values are strings, numbers, true, false, null or operator objects", item, path)
        elif isinstance(item, str) and not isinstance(item, JsonNumber):
            strings.append(item)
        else:
            tests.append(_leaf.equals_literal(item))
    only_strings = frozenset(strings) if strings and not tests else None
    if strings:
        tests.insert(0, _leaf.strings_in(frozenset(strings)))
    return Condition(path, _leaf.any_of(tests) if tests else None, absent_ok, only_strings)


def _string(arg: Any, op: str, path: tuple[str, ...], *, empty_ok: bool = True) -> str:
    if not isinstance(arg, str) or isinstance(arg, JsonNumber):
        _fail(f"{op} takes a string", {op: arg}, path)
    if not empty_ok and not arg:
        _fail(f"{op} takes a non-empty string", {op: arg}, path)
    return arg


def _operator(spec: dict[str, Any], path: tuple[str, ...], extensions: bool) -> LeafTest:
    if len(spec) != 1:
        _fail("an operator object has exactly one key", spec, path)
    ((op, arg),) = spec.items()
    if op == "exactly":
        return _leaf.equals_literal(_string(arg, op, path))
    if op in ("prefix", "suffix"):
        if isinstance(arg, dict):
            if set(arg) != {"equals-ignore-case"}:
                _fail(f'{op} takes a string or {{"equals-ignore-case": string}}', spec, path)
            text = _string(arg["equals-ignore-case"], "equals-ignore-case", path)
            return _leaf.ignore_case(text, anchor=op)
        text = _string(arg, op, path)
        return _leaf.prefix(text) if op == "prefix" else _leaf.suffix(text)
    if op == "equals-ignore-case":
        return _leaf.ignore_case(_string(arg, op, path))
    if op == "wildcard":
        return _wildcard(_string(arg, op, path), spec, path)
    if op == "cidr":
        return _leaf.in_network(_network(_string(arg, op, path), spec, path))
    if op == "exists":
        if arg is not True:  # exists: false is handled by the caller
            _fail("exists takes true or false", spec, path)
        return lambda v: True
    if op == "numeric":
        return _numeric(arg, spec, path, extensions)
    if op == "anything-but":
        return _anything_but(arg, spec, path)
    _fail(
        "unknown operator; valid: prefix, suffix, equals-ignore-case, wildcard, anything-but, "
        "numeric, exists, cidr, exactly",
        op,
        path,
    )


def _network(
    text: str, spec: Any, path: tuple[str, ...]
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """event-ruler's CIDR rules: one "/", mask bits below 32 (IPv4) or 128 (IPv6)."""
    address, _, bits = text.partition("/")
    try:
        ip = ipaddress.ip_address(address)
        mask = int(bits)
    except ValueError:
        ip, mask = None, -1
    if ip is None or bits.count("/") or mask < 0 or mask >= ip.max_prefixlen:
        _fail(
            'cidr takes an address, "/" and mask bits below 32 (IPv4) or 128 (IPv6), '
            'such as "10.0.0.0/24" or "2001:db8::/32"',
            spec,
            path,
        )
    return ipaddress.ip_network(f"{ip}/{mask}", strict=False)


def _wildcard(text: str, spec: Any, path: tuple[str, ...]) -> LeafTest:
    try:
        return _leaf.wildcard(text)
    except ValueError as exc:
        _fail(f"wildcard: {exc}", spec, path)


def _number(arg: Any, spec: Any, path: tuple[str, ...]) -> tuple[float, Decimal]:
    if not isinstance(arg, JsonNumber):
        _fail("numeric bounds are JSON numbers (not strings)", spec, path)
    double = _leaf.comparable(arg)
    if double is None:
        _fail(f"{arg} has no exact IEEE double (AWS compares numbers as doubles)", spec, path)
    return double, Decimal(arg)


def _numeric(arg: Any, spec: Any, path: tuple[str, ...], extensions: bool) -> LeafTest:
    forms = '["=", n], [">", n], ["<=", n], or a range such as [">", n, "<=", m]'
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        _fail(f"numeric takes {forms}", spec, path)
    ops = arg[0::2]
    if any(not isinstance(o, str) or o not in _leaf._COMPARE for o in ops):
        _fail(f"numeric takes {forms}", spec, path)
    checks = [(op, *_number(bound, spec, path)) for op, bound in zip(ops, arg[1::2], strict=True)]
    if len(checks) == 2:
        (low_op, low, _), (high_op, high, _) = checks
        if low_op not in _LOWER or high_op not in _UPPER:
            _fail(f"a numeric range is a lower bound then an upper bound: {forms}", spec, path)
        if not low < high:
            _fail("a numeric range's lower bound must be less than its upper bound", spec, path)
    return _leaf.numeric_range(checks, strings=extensions)


_BUT_FORMS = (
    "anything-but takes a string, a number, a list of strings or of numbers, or "
    '{"prefix"|"suffix"|"equals-ignore-case"|"wildcard": string or list of strings}'
)


def _anything_but(arg: Any, spec: Any, path: tuple[str, ...]) -> LeafTest:
    if isinstance(arg, dict):
        if len(arg) != 1 or next(iter(arg)) not in (
            "prefix", "suffix", "equals-ignore-case", "wildcard"
        ):  # fmt: skip
            _fail(_BUT_FORMS, spec, path)
        ((op, inner),) = arg.items()
        texts = inner if isinstance(inner, list) else [inner]
        if not texts:
            _fail(_BUT_FORMS, spec, path)
        empty_ok = op not in ("prefix", "suffix")
        tests = [
            _operator({op: _string(t, op, path, empty_ok=empty_ok)}, path, False) for t in texts
        ]
        return _leaf.negate(_leaf.any_of(tests))
    values = arg if isinstance(arg, list) else [arg]
    numbers = [v for v in values if isinstance(v, JsonNumber)]
    strings = [v for v in values if isinstance(v, str) and not isinstance(v, JsonNumber)]
    if not values or len(numbers) + len(strings) != len(values) or (numbers and strings):
        _fail(_BUT_FORMS, spec, path)
    for number in numbers:
        _number(number, spec, path)
    if strings:
        return _leaf.negate(_leaf.strings_in(frozenset(strings)))
    return _leaf.negate(_leaf.any_of([_leaf.equals_literal(n) for n in numbers]))
