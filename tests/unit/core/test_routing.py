"""Lambda-compatible filter patterns and routes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from processor.core.routing import FilterPattern, PatternError, Route, compile_filters
from processor.testing import make_record

RECORD: dict[str, Any] = {
    "eventID": "1",
    "eventName": "INSERT",
    "eventVersion": "1.0",
    "dynamodb": {
        "ApproximateCreationDateTime": 1678831218.0,
        "Keys": {"CustomerName": {"S": "AnyCompany Industries"}},
        "NewImage": {
            "AccountManager": {"S": "Pat Candella"},
            "PaymentTerms": {"S": "60 days"},
            "CustomerName": {"S": "AnyCompany Industries"},
            "Amount": {"N": "150"},
            "Tags": {"SS": ["gold", "eu"]},
            "Active": {"BOOL": True},
            "Note": {"NULL": True},
        },
        "SequenceNumber": "111",
        "SizeBytes": 26,
        "StreamViewType": "NEW_IMAGE",
    },
}


def matches(pattern: dict[str, Any], record: dict[str, Any] = RECORD) -> bool:
    return FilterPattern.parse(json.dumps(pattern)).matches(record)


def image(field: str, matcher: list[Any], tag: str = "S") -> dict[str, Any]:
    return {"dynamodb": {"NewImage": {field: {tag: matcher}}}}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # documented DynamoDB examples: table key, attribute, boolean
        ({"dynamodb": {"Keys": {"CustomerName": {"S": ["AnyCompany Industries"]}}}}, True),
        ({"dynamodb": {"Keys": {"CustomerName": {"S": ["Other Corp"]}}}}, False),
        (image("AccountManager", ["Pat Candella"]), True),
        ({"dynamodb": {"NewImage": {"Active": {"BOOL": [True]}}}}, True),
        ({"dynamodb": {"NewImage": {"Active": {"BOOL": [False]}}}}, False),
        ({"eventName": ["INSERT", "MODIFY"]}, True),
        ({"eventName": ["REMOVE"]}, False),
        # null
        ({"dynamodb": {"NewImage": {"Note": {"NULL": [True]}}}}, True),
        # prefix / suffix / equals-ignore-case / wildcard
        (image("PaymentTerms", [{"prefix": "60"}]), True),
        (image("PaymentTerms", [{"prefix": "30"}]), False),
        (image("PaymentTerms", [{"suffix": "days"}]), True),
        (image("PaymentTerms", [{"suffix": "weeks"}]), False),
        (image("PaymentTerms", [{"prefix": {"equals-ignore-case": "60 DAY"}}]), True),
        (image("PaymentTerms", [{"suffix": {"equals-ignore-case": "DAYS"}}]), True),
        (image("AccountManager", [{"equals-ignore-case": "pat candella"}]), True),
        (image("AccountManager", [{"equals-ignore-case": "pat"}]), False),
        (image("AccountManager", [{"wildcard": "Pat*la"}]), True),
        (image("AccountManager", [{"wildcard": "*Smith"}]), False),
        # anything-but: value, list, prefix
        (image("PaymentTerms", [{"anything-but": "30 days"}]), True),
        (image("PaymentTerms", [{"anything-but": ["30 days", "60 days"]}]), False),
        (image("PaymentTerms", [{"anything-but": {"prefix": "60"}}]), False),
        (image("PaymentTerms", [{"anything-but": {"suffix": "weeks"}}]), True),
        # numeric never matches N values in AWS: they travel as strings (see the extension)
        (image("Amount", [{"numeric": [">", 100]}], "N"), False),
        (image("Amount", [{"numeric": ["=", 150]}], "N"), False),
        ({"dynamodb": {"SizeBytes": [{"numeric": [">", 20, "<=", 26]}]}}, True),
        # exists
        ({"dynamodb": {"NewImage": {"PaymentTerms": {"S": [{"exists": True}]}}}}, True),
        ({"dynamodb": {"NewImage": {"PaymentTerms": [{"exists": True}]}}}, False),
        ({"dynamodb": {"NewImage": {"Missing": [{"exists": True}]}}}, False),
        ({"dynamodb": {"NewImage": {"Missing": [{"exists": False}]}}}, True),
        # an attribute object is not a leaf: exists:false holds at its level (AWS documents it)
        ({"dynamodb": {"NewImage": {"PaymentTerms": [{"exists": False}]}}}, True),
        ({"dynamodb": {"NewImage": {"PaymentTerms": {"S": [{"exists": False}]}}}}, False),
        # exists:false holds when a parent object is absent too (OldImage of an INSERT)
        ({"dynamodb": {"OldImage": {"PaymentTerms": {"S": [{"exists": False}]}}}}, True),
        # a list value (a set) matches if any element does
        (image("Tags", ["eu"], "SS"), True),
        (image("Tags", ["us"], "SS"), False),
        # OR inside a leaf, AND across keys, $or across sub-patterns
        (image("PaymentTerms", ["30 days", "60 days"]), True),
        ({"eventName": ["INSERT"], **image("PaymentTerms", ["30 days"])}, False),
        ({"$or": [{"eventName": ["REMOVE"]}, image("PaymentTerms", ["60 days"])]}, True),
        ({"$or": [{"eventName": ["REMOVE"]}, image("PaymentTerms", ["30 days"])]}, False),
        # a missing path never matches a value matcher
        ({"dynamodb": {"OldImage": {"PaymentTerms": {"S": ["60 days"]}}}}, False),
    ],
)
def test_pattern_semantics(pattern: dict[str, Any], expected: bool) -> None:
    """Each operator matches the record in DynamoDB JSON as Lambda's event filtering does."""
    assert matches(pattern) is expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ('{"eventName": ["INSERT"', '{"eventName": ["INSERT"'),
        ('{"eventName": "INSERT"}', '"INSERT"'),
        ('{"eventName": [{"prefixx": "IN"}]}', "prefixx"),
        ('{"dynamodb": {"NewImage": {"n": {"N": [{"numeric": ["~", 1]}]}}}}', "~"),
        ('{"a": [{"numeric": [">", "1"]}]}', '">"'),
        ('{"a": [{"exists": "yes"}]}', "yes"),
        ('{"a": [{"wildcard": "a**b"}]}', "a**b"),
        ('{"$or": [{"a": ["x"]}]}', "$or"),
        ("[]", "[]"),
        ("{}", "{}"),
    ],
)
def test_malformed_patterns_quote_the_bad_fragment(source: str, fragment: str) -> None:
    """A malformed pattern raises PatternError whose message quotes the offending part."""
    with pytest.raises(PatternError) as info:
        FilterPattern.parse(source)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (image("Amount", [{"numeric": [">", 100]}], "N"), True),
        (image("Amount", [{"numeric": [">", 100, "<=", 150]}], "N"), True),
        (image("Amount", [{"numeric": [">=", 151]}], "N"), False),
        (image("Amount", [{"numeric": ["=", 150]}], "N"), True),
        (image("Amount", [{"numeric": ["<", 150]}], "N"), False),
        (image("AccountManager", [{"numeric": [">", 0]}]), False),
    ],
)
def test_numeric_extension_compares_n_values(pattern: dict[str, Any], expected: bool) -> None:
    """With the opt-in extension, numeric compares the strings DynamoDB N values travel as."""
    compiled = FilterPattern.parse(json.dumps(pattern), extensions=True)
    assert compiled.matches(RECORD) is expected


def test_at_most_five_filters_per_route() -> None:
    """A route takes up to five patterns; a sixth is refused."""
    assert len(compile_filters(['{"eventName": ["INSERT"]}'] * 5)) == 5
    with pytest.raises(PatternError, match="at most 5"):
        compile_filters(['{"eventName": ["INSERT"]}'] * 6)


def test_route_selects_records_matching_any_filter_in_order() -> None:
    """A route keeps, in stream order, the records any of its filters matches."""
    inserts = [make_record({"pk": {"S": str(i)}}) for i in range(3)]
    removes = [make_record({"pk": {"S": str(i)}}, event_name="REMOVE") for i in range(2)]
    mixed = [inserts[0], removes[0], inserts[1], removes[1], inserts[2]]
    only_inserts = Route("r", print, compile_filters(['{"eventName": ["INSERT"]}']))
    both = Route(
        "r", print, compile_filters(['{"eventName": ["INSERT"]}', '{"eventName": ["REMOVE"]}'])
    )
    unfiltered = Route("r", print)
    assert only_inserts.select(mixed) == inserts
    assert both.select(mixed) == mixed
    assert unfiltered.select(mixed) == mixed
