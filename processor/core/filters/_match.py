"""Matching a compiled rule against an event (pure: no I/O, no allocation on the fast path).

A condition looks at the *leaves* found at its path: strings, numbers, booleans and nulls.
Objects are never values. Arrays are walked transparently, and event-ruler's array
consistency holds: the leaves one rule uses must come from the same element of every array
they pass through. So ``{"a": {"b": [1], "c": [2]}}`` does not match
``{"a": [{"b": 1}, {"c": 2}]}``. ``exists: false`` holds when no leaf at its path is
consistent with the elements the rule's earlier conditions (in path order) settled on.

Most records reach every leaf without meeting an array; :func:`match_rule` decides those in
one pass of dictionary lookups and falls back to the full search only when an array lies on
a path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from processor.core.filters._compile import Condition

__all__ = ["compile_rule", "match_rule"]

_MISSING: Any = object()
_NO_ARRAYS = object()
Rule = tuple[Condition, ...]


def _flat(values: list[Any], into: list[Any]) -> list[Any]:
    for value in values:
        if type(value) is list:
            _flat(value, into)
        elif type(value) is not dict:
            into.append(value)
    return into


def _simple(rule: Rule, event: Any) -> bool | None:
    """The answer when no array lies before a path's last step, else ``None``."""
    for cond in rule:
        node = event
        for key in cond.path:
            kind = type(node)
            if kind is dict:
                node = node.get(key, _MISSING)
            elif kind is list:
                return None
            else:
                node = _MISSING
                break
        kind = type(node)
        if kind is dict or node is _MISSING:
            if not cond.absent_ok:
                return False
            continue
        test = cond.test
        if kind is list:
            leaves = _flat(node, [])
            if not leaves:
                if not cond.absent_ok:
                    return False
                continue
            if test is None or not any(test(leaf) for leaf in leaves):
                return False
        elif test is None or not test(node):
            return False
    return True


def _leaves(
    node: Any, path: tuple[str, ...], step: int, pinned: dict[int, int]
) -> Iterator[tuple[Any, dict[int, int]]]:
    """Each leaf at ``path`` with the array elements it lies in (array id to index)."""
    while True:
        kind = type(node)
        if kind is list:
            index = pinned.get(id(node))
            if index is not None:
                node = node[index]
                continue
            for i, element in enumerate(node):
                yield from _leaves(element, path, step, {**pinned, id(node): i})
            return
        if step == len(path):
            if kind is not dict:
                yield node, pinned
            return
        if kind is not dict:
            return
        node = node.get(path[step], _MISSING)
        if node is _MISSING:
            return
        step += 1


def _search(rule: Rule, k: int, event: Any, pinned: dict[int, int]) -> bool:
    if k == len(rule):
        return True
    cond = rule[k]
    found = False
    for leaf, where in _leaves(event, cond.path, 0, pinned):
        found = True
        if cond.test is not None and cond.test(leaf) and _search(rule, k + 1, event, where):
            return True
    return not found and cond.absent_ok and _search(rule, k + 1, event, pinned)


def match_rule(rule: Rule, event: Any) -> bool:
    """Whether ``event`` (parsed JSON) satisfies every condition of ``rule``."""
    answer = _simple(rule, event)
    if answer is None:
        return _search(rule, 0, event, {})
    return answer


def compile_rule(rule: Rule) -> Callable[[Any], bool]:
    """A matcher for ``rule``: :func:`match_rule`, specialised for the commonest shapes.

    One condition on a path whose value is usually a string (``eventName``, a key's ``S``)
    is answered with one lookup per step and, for exact strings, one set membership test.
    """
    test = rule[0].test if len(rule) == 1 and not rule[0].absent_ok else None
    if test is None:
        return partial(match_rule, rule)
    path, strings = rule[0].path, rule[0].strings
    slow = partial(match_rule, rule)
    last = path[-1]
    parents = path[:-1]

    def one(event: Any) -> bool:
        node = event
        for key in parents:
            node = node.get(key, _MISSING) if type(node) is dict else node
            if node is _MISSING:
                return False
        if type(node) is not dict:
            return slow(event)
        value = node.get(last, _MISSING)
        if type(value) is str:
            return value in strings if strings is not None else test(value)
        if value is _MISSING or type(value) is dict:
            return False
        if type(value) is list:
            return slow(event)
        return test(value)

    return one
