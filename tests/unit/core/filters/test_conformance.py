"""The conformance corpus: our matcher against verdicts checked with AWS's event-ruler."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from processor.core.filters import FilterPattern, PatternError

CORPUS = json.loads((Path(__file__).parent / "conformance.json").read_text(encoding="utf-8"))
EVENTS: dict[str, Any] = CORPUS["events"]


def _event(case: dict[str, Any]) -> Any:
    if "event" in case:
        return EVENTS[case["event"]]
    return json.loads(case["event_json"]) if "event_json" in case else None


def _verdict(pattern: str, event: Any) -> str:
    try:
        compiled = FilterPattern.parse(pattern)
    except PatternError:
        return "error"
    if event is None:
        return "valid"
    return "match" if compiled.matches(event) else "nomatch"


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    seen: Counter[str] = Counter()
    ids = []
    for case in cases:
        seen[case["group"]] += 1
        ids.append(f"{case['group']}-{seen[case['group']]}")
    return ids


@pytest.mark.parametrize("case", CORPUS["cases"], ids=_ids(CORPUS["cases"]))
def test_corpus_case(case: dict[str, Any]) -> None:
    """Each (pattern, event) pair matches, fails to match, or is refused as event-ruler does."""
    assert _verdict(case["pattern"], _event(case)) == case["expected"], case


@pytest.mark.parametrize("case", CORPUS["deviations"], ids=lambda c: c["pattern"])
def test_documented_deviations(case: dict[str, Any]) -> None:
    """Where we differ from event-ruler on purpose, we differ exactly as documented."""
    assert case["expected"] != case["event_ruler"]
    assert _verdict(case["pattern"], _event(case)) == case["expected"]


def test_corpus_covers_every_operator_and_record_shape() -> None:
    """The corpus is large and spans operators, DynamoDB record shapes and refusals."""
    cases = CORPUS["cases"]
    assert len(cases) >= 500
    groups = Counter(c["group"] for c in cases)
    operators = "exact null_bool prefix_suffix equals_ignore_case wildcard anything_but numeric"
    for group in [*operators.split(), "exists", "cidr", "or", "aws_docs", "invalid"]:
        assert groups[group] > 0, group
    for shape in ("insert", "modify", "remove", "ttl_remove", "keys_only", "new_image_only"):
        assert any(c.get("event") == shape for c in cases), shape
    assert Counter(c["expected"] for c in cases)["match"] > 200
    assert Counter(c["expected"] for c in cases)["nomatch"] > 200
