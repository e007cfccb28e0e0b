"""A key repeated in one pattern object (issue 33, item 5): objects merge as event-ruler
compiles them; the same leaf twice is refused with what to write instead. The verdicts are
in the corpus (group duplicate_keys, confirmed with event-ruler); these pin the messages."""

from __future__ import annotations

import pytest

from processor.core.filters import FilterPattern, PatternError
from processor.core.filters._compile import compile_pattern

BOOLEAN_AND = (
    '{"dynamodb": {"NewImage": {"AccountManager": {"S": ["Pat Candella"]}}}, '
    '"dynamodb": {"OldImage": {"PaymentTerms": {"S": ["60 days"]}}}}'
)


def event(new: dict[str, str], old: dict[str, str]) -> dict[str, object]:
    return {
        "eventName": "MODIFY",
        "dynamodb": {
            "NewImage": {k: {"S": v} for k, v in new.items()},
            "OldImage": {k: {"S": v} for k, v in old.items()},
        },
    }


def test_the_docs_boolean_and_needs_both_images() -> None:
    pattern = FilterPattern.parse(BOOLEAN_AND)
    assert pattern.matches(event({"AccountManager": "Pat Candella"}, {"PaymentTerms": "60 days"}))
    assert not pattern.matches(event({"AccountManager": "Pat Candella"}, {"PaymentTerms": "30"}))
    assert not pattern.matches(event({"AccountManager": "Sam"}, {"PaymentTerms": "60 days"}))


def test_it_is_the_same_as_one_object_holding_both() -> None:
    merged = (
        '{"dynamodb": {"NewImage": {"AccountManager": {"S": ["Pat Candella"]}}, '
        '"OldImage": {"PaymentTerms": {"S": ["60 days"]}}}}'
    )

    def shape(source: str) -> list[list[tuple[object, ...]]]:
        return [
            [(c.path, c.absent_ok, c.strings) for c in rule] for rule in compile_pattern(source)
        ]

    assert shape(BOOLEAN_AND) == shape(merged)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ('{"a": [1], "a": [2]}', 'give its values as one list: {"a": [1, 2]}'),
        (
            '{"d": {"s": {"S": ["x"]}}, "d": {"s": {"S": [{"prefix": "y"}]}}}',
            'give its values as one list: {"S": ["x", {"prefix": "y"}]}',
        ),
        ('{"d": ["q"], "d": {"a": ["x"]}}', "give it one value"),
    ],
)
def test_the_same_leaf_twice_is_refused_saying_what_to_write(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match="constrained twice") as refused:
        FilterPattern.parse(pattern)
    assert message in str(refused.value)
