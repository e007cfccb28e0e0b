"""Invariants of AWS's filter semantics, over random events and patterns (hypothesis)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.filters import FilterPattern, PatternError

KEYS = st.sampled_from(["a", "b", "c"])
LEAVES = st.one_of(
    st.sampled_from(["x", "y", "X", "", "1", "10.0.0.1"]),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([2.5, -0.5]),
    st.booleans(),
    st.none(),
)
EVENTS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=12,
)
VALUES = st.one_of(
    LEAVES,
    st.sampled_from(
        [
            {"prefix": "x"},
            {"prefix": ""},
            {"suffix": "y"},
            {"equals-ignore-case": "X"},
            {"wildcard": "*y"},
            {"numeric": [">", 0]},
            {"numeric": [">=", -1, "<", 2]},
            {"anything-but": "x"},
            {"anything-but": [0, 1]},
            {"anything-but": {"prefix": "x"}},
            {"cidr": "10.0.0.0/24"},
        ]
    ),
)


def _paths() -> st.SearchStrategy[list[str]]:
    return st.lists(KEYS, min_size=1, max_size=3)


def nest(path: list[str], leaf: Any) -> dict[str, Any]:
    node: Any = leaf
    for key in reversed(path):
        node = {key: node}
    return node  # type: ignore[no-any-return]


def matches(pattern: dict[str, Any], event: Any) -> bool:
    return FilterPattern.parse(json.dumps(pattern)).matches(event)


def leaves_at(node: Any, path: list[str]) -> list[Any]:
    """Every leaf at ``path``, walking arrays (no pattern has two fields here: no consistency)."""
    if isinstance(node, list):
        return [leaf for item in node for leaf in leaves_at(item, path)]
    if not path:
        return [] if isinstance(node, dict) else [node]
    if not isinstance(node, dict) or path[0] not in node:
        return []
    return leaves_at(node[path[0]], path[1:])


def event_of(node: Any) -> dict[str, Any]:
    return node if isinstance(node, dict) else {"a": node}


@settings(max_examples=300, deadline=None)
@given(EVENTS.map(event_of), _paths())
def test_exists_true_and_false_partition_events(event: dict[str, Any], path: list[str]) -> None:
    """exists:true matches exactly when a leaf is at the path; exists:false exactly when not."""
    present = matches(nest(path, [{"exists": True}]), event)
    absent = matches(nest(path, [{"exists": False}]), event)
    assert present != absent
    assert present == bool(leaves_at(event, path))


@settings(max_examples=300, deadline=None)
@given(EVENTS.map(event_of), _paths(), st.sampled_from(["x", "y", ""]))
def test_anything_but_matches_a_leaf_that_differs(
    event: dict[str, Any], path: list[str], value: str
) -> None:
    """anything-but X matches exactly when some leaf at the path is not the string X.

    (event-ruler tests each leaf: ``["x", "y"]`` is "anything but x" through its "y".)
    """
    expected = any(leaf != value or type(leaf) is not str for leaf in leaves_at(event, path))
    assert matches(nest(path, [{"anything-but": value}]), event) == expected


@settings(max_examples=300, deadline=None)
@given(EVENTS.map(event_of), _paths(), st.lists(VALUES, min_size=2, max_size=3))
def test_a_value_list_is_the_union_of_its_values(
    event: dict[str, Any], path: list[str], values: list[Any]
) -> None:
    """[v1, v2, ...] matches exactly when one of [v1], [v2], ... does."""
    union = any(matches(nest(path, [v]), event) for v in values)
    assert matches(nest(path, values), event) == union


@settings(max_examples=300, deadline=None)
@given(
    EVENTS.map(event_of),
    st.lists(st.tuples(_paths(), VALUES), min_size=2, max_size=3),
)
def test_or_is_the_union_of_its_branches(
    event: dict[str, Any], branches: list[tuple[list[str], Any]]
) -> None:
    """{"$or": [p1, p2, ...]} matches exactly when one of p1, p2, ... does."""
    patterns = [nest(path, [value]) for path, value in branches]
    union = any(matches(p, event) for p in patterns)
    assert matches({"$or": patterns}, event) == union


@settings(max_examples=300, deadline=None)
@given(EVENTS.map(event_of), _paths(), VALUES, st.randoms(use_true_random=False))
def test_key_order_in_the_event_does_not_matter(
    event: dict[str, Any], path: list[str], value: Any, rng: Any
) -> None:
    """Reordering an event's object keys never changes the answer."""

    def shuffled(node: Any) -> Any:
        if isinstance(node, dict):
            items = list(node.items())
            rng.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(node, list):
            return [shuffled(v) for v in node]
        return node

    pattern = nest(path, [value])
    assert matches(pattern, event) == matches(pattern, shuffled(event))


@settings(max_examples=300, deadline=None)
@given(EVENTS.map(event_of), _paths(), st.sampled_from(["x", "y", "X", ""]))
def test_prefix_and_equals_ignore_case_agree_with_their_definitions(
    event: dict[str, Any], path: list[str], text: str
) -> None:
    """prefix tests string leaves' starts; equals-ignore-case ASCII strings case-blind."""
    leaves = [leaf for leaf in leaves_at(event, path) if type(leaf) is str]
    assert matches(nest(path, [{"prefix": text}]), event) == any(
        leaf.startswith(text) for leaf in leaves
    )
    assert matches(nest(path, [{"equals-ignore-case": text}]), event) == any(
        leaf.lower() == text.lower() for leaf in leaves
    )


JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(
                st.sampled_from(
                    ["$or", "prefix", "numeric", "anything-but", "exists", "wildcard", "cidr"]
                ),
                st.text(max_size=3),
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(JSON)
def test_the_compiler_accepts_or_refuses_anything_with_pattern_error(pattern: Any) -> None:
    """Arbitrary JSON compiles or raises PatternError; never another exception."""
    try:
        compiled = FilterPattern.parse(json.dumps(pattern))
    except PatternError:
        return
    compiled.matches({"a": 1, "b": [{"c": "x"}]})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_is_a_pattern_or_a_pattern_error(text: str) -> None:
    """Arbitrary text (truncated JSON, control characters) raises nothing but PatternError."""
    with contextlib.suppress(PatternError):
        FilterPattern.parse(text)
