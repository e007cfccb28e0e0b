"""The record view and the AttributeValue decoder."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core import records as records_module
from processor.core.records import EventName, StreamRecord
from processor.core.values import (
    decode_image,
    decode_image_json,
    decode_value,
    plain_image,
    to_client_image,
)
from processor.errors import RecordError
from processor.sources.dynamodb.wire import decode_page
from processor.testing import make_record

# -- strategies: AttributeValues in boto3's client form (binary as bytes) ----------------------

_numbers = st.one_of(
    st.integers(min_value=-(10**37), max_value=10**37).map(str),
    st.decimals(
        min_value=Decimal("-1e30"), max_value=Decimal("1e30"), allow_nan=False, places=8
    ).map(lambda d: str(d.normalize()) if d != 0 else "0"),
)
_strings = st.text(max_size=20)
_bytes = st.binary(max_size=20)
_scalars = st.one_of(
    _strings.map(lambda s: {"S": s}),
    _numbers.map(lambda n: {"N": n}),
    _bytes.map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(_strings, min_size=1, max_size=5, unique=True).map(lambda v: {"SS": v}),
    st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=5, unique=True).map(
        lambda v: {"NS": [str(n) for n in v]}
    ),
    st.lists(_bytes, min_size=1, max_size=5, unique=True).map(lambda v: {"BS": v}),
)
client_values: st.SearchStrategy[dict[str, Any]] = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda v: {"L": v}),
        st.dictionaries(_strings, children, max_size=4).map(lambda v: {"M": v}),
    ),
    max_leaves=12,
)


def to_wire(value: dict[str, Any]) -> dict[str, Any]:
    """boto3 client form -> DynamoDB JSON as on the wire (binary base64-encoded)."""
    ((tag, raw),) = value.items()
    if tag == "B":
        return {"B": base64.b64encode(raw).decode()}
    if tag == "BS":
        return {"BS": [base64.b64encode(b).decode() for b in raw]}
    if tag == "L":
        return {"L": [to_wire(v) for v in raw]}
    if tag == "M":
        return {"M": {k: to_wire(v) for k, v in raw.items()}}
    return {tag: raw}


@settings(max_examples=400, deadline=None)
@given(client_values)
def test_decode_value_equals_type_deserializer(value: dict[str, Any]) -> None:
    """For any AttributeValue, our decoder returns exactly what TypeDeserializer returns."""
    expected = TypeDeserializer().deserialize(value)  # type: ignore[arg-type]
    actual = decode_value(to_wire(value))
    assert actual == expected
    assert type(actual) is type(expected)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_strings, client_values, max_size=6))
def test_to_client_image_round_trips_wire_to_client_form(image: dict[str, Any]) -> None:
    """Converting the wire image for boto3 restores the exact client form (binary as bytes)."""
    assert to_client_image({k: to_wire(v) for k, v in image.items()}) == image


def test_numbers_keep_dynamodb_precision() -> None:
    """Numbers decode to Decimal with all 38 digits DynamoDB allows."""
    digits = "1234567890123456789012345678901234567.8"
    assert decode_value({"N": digits}) == Decimal(digits)


def test_decoded_binary_is_boto3_binary() -> None:
    """Binary values decode to boto3's Binary wrapper, sets of them to a set of Binary."""
    assert decode_value({"B": "AP8="}) == Binary(b"\x00\xff")
    assert decode_value({"BS": ["AP8=", "YQ=="]}) == {Binary(b"\x00\xff"), Binary(b"a")}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"X": "1"}, "unknown AttributeValue type tag"),
        ({"S": "a", "N": "1"}, "exactly one type tag"),
        ({"N": "not-a-number"}, "malformed N value"),
        ({"B": "***"}, "not valid base64"),
    ],
)
def test_malformed_values_raise_record_error(value: dict[str, Any], reason: str) -> None:
    """A value no decoder accepts is a RecordError naming the problem."""
    with pytest.raises(RecordError, match=reason):
        decode_value(value)


def test_record_view_fields() -> None:
    """The typed view exposes the change's identity, position, time and images."""
    record = make_record(
        {"pk": {"S": "TENANT#a"}, "sk": {"S": "1"}},
        event_name="MODIFY",
        new_image={"pk": {"S": "TENANT#a"}, "sk": {"S": "1"}, "n": {"N": "2"}},
        old_image={"pk": {"S": "TENANT#a"}, "sk": {"S": "1"}, "n": {"N": "1.50"}},
        sequence_number="42",
        created=1_700_000_000,
    )
    assert record.event_name is EventName.MODIFY
    assert record.sequence_number == "42"
    assert record.sequence_int == 42
    assert record.keys == {"pk": "TENANT#a", "sk": "1"}
    assert record.new_image == {"pk": "TENANT#a", "sk": "1", "n": Decimal(2)}
    assert record.old_image is not None
    assert record.old_image["n"] == Decimal("1.50")
    assert record.approximate_creation_time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert not record.is_ttl_delete


def test_images_are_decoded_once_on_first_read() -> None:
    """Decoding happens on first access and the result is cached."""
    record = make_record({"pk": {"S": "a"}}, new_image={"pk": {"S": "a"}, "n": {"N": "1"}})
    assert record._new is records_module._UNSET  # not decoded yet
    first = record.new_image
    assert record.new_image is first


def test_ttl_delete_is_recognised() -> None:
    """A REMOVE made by DynamoDB's TTL service is flagged; a user's REMOVE is not."""
    assert make_record({"pk": {"S": "a"}}, event_name="REMOVE", ttl_delete=True).is_ttl_delete
    assert not make_record({"pk": {"S": "a"}}, event_name="REMOVE").is_ttl_delete


def test_key_id_is_equal_for_the_same_item_only() -> None:
    """Records of the same item share key_id whatever the attribute order; others differ."""
    a = make_record({"pk": {"S": "a"}, "sk": {"S": "1"}})
    b = make_record({"sk": {"S": "1"}, "pk": {"S": "a"}})
    c = make_record({"pk": {"S": "a"}, "sk": {"S": "2"}})
    assert a.key_id == b.key_id != c.key_id


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([], "JSON object"),
        ({"eventID": "1", "eventName": "INSERT"}, "no 'dynamodb' object"),
        (
            {"eventID": "1", "eventName": "INSERT", "dynamodb": {"Keys": {"a": {"S": "1"}}}},
            "SequenceNumber",
        ),
        (
            {
                "eventID": "1",
                "eventName": "UPSERT",
                "dynamodb": {"SequenceNumber": "1", "Keys": {"a": {"S": "1"}}},
            },
            "eventName",
        ),
        ({"eventID": "1", "eventName": "INSERT", "dynamodb": {"SequenceNumber": "1"}}, "Keys"),
        # an eventName that is not text (nothing types a Lambda event or a redrive file):
        # a RecordError like any other, never a TypeError that fails the whole batch
        *(
            (
                {
                    "eventID": "1",
                    "eventName": name,
                    "dynamodb": {"SequenceNumber": "1", "Keys": {"a": {"S": "1"}}},
                },
                "eventName",
            )
            for name in (["INSERT"], {"S": "INSERT"}, None, 1)
        ),
    ],
)
def test_from_wire_rejects_malformed_records(raw: Any, reason: str) -> None:
    """A record missing what consumers rely on is a RecordError (it will be dead-lettered)."""
    with pytest.raises(RecordError, match=reason):
        StreamRecord.from_wire(raw)


def test_plain_image_is_json_ready_and_exact() -> None:
    """Plain values: exact Decimals, sets as sorted lists, binary left as base64."""
    image: dict[str, Any] = {
        "n": {"N": "0.10000000000000000000000000000000000001"},
        "ss": {"SS": ["b", "a"]},
        "ns": {"NS": ["10", "9"]},
        "bs": {"BS": ["Yg==", "YQ=="]},
        "b": {"B": "AP8="},
        "m": {"M": {"l": {"L": [{"NULL": True}, {"BOOL": False}]}}},
    }
    assert plain_image(image) == {
        "n": Decimal("0.10000000000000000000000000000000000001"),
        "ss": ["a", "b"],
        "ns": [Decimal(9), Decimal(10)],
        "bs": ["YQ==", "Yg=="],
        "b": "AP8=",
        "m": {"l": [None, False]},
    }
    assert decode_image(None) is None


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.dictionaries(_strings, client_values, min_size=1, max_size=5), min_size=1, max_size=5
    )
)
def test_page_decoder_values_equal_type_deserializer(images: list[dict[str, Any]]) -> None:
    """Records decoded from a GetRecords body (the fast path) equal TypeDeserializer's values."""
    records = []
    for i, image in enumerate(images):
        wire = {k: to_wire(v) for k, v in image.items()}
        records.append(
            {
                "eventID": f"e{i}",
                "eventName": "MODIFY",
                "dynamodb": {
                    "Keys": {"pk": {"S": str(i)}},
                    "NewImage": wire,
                    "OldImage": wire,
                    "SequenceNumber": str(100 + i),
                },
            }
        )
    body = json.dumps({"Records": records, "NextShardIterator": "it"}).encode()
    decoded, next_iterator, malformed = decode_page(body, "shard")
    assert next_iterator == "it"
    assert malformed == []
    deserialize = TypeDeserializer().deserialize
    for record, image in zip(decoded, images, strict=True):
        expected = {k: deserialize(v) for k, v in image.items()}
        assert record.new_image == expected
        assert record.old_image == expected
        assert record.raw["dynamodb"]["NewImage"] == {k: to_wire(v) for k, v in image.items()}


def test_page_decoder_sends_malformed_records_aside() -> None:
    """A record that breaks the typed shape does not lose the page: it alone is malformed."""
    good = {
        "eventID": "a",
        "eventName": "INSERT",
        "dynamodb": {"Keys": {"k": {"S": "1"}}, "SequenceNumber": "1"},
    }
    bad = {
        "eventID": "b",
        "eventName": "UPSERT",
        "dynamodb": {"Keys": {"k": {"S": "1"}}, "SequenceNumber": "2"},
    }
    broken = {"eventID": 3, "dynamodb": {}}
    for page in ([good, bad], [good, broken]):
        records, _, malformed = decode_page(json.dumps({"Records": page}).encode(), "s")
        assert [r.event_id for r in records] == ["a"]
        assert len(malformed) == 1


#: Numbers DynamoDB stores and returns; the first four make boto3's TypeDeserializer fail.
LEGAL_NUMBERS = [
    "1" + "0" * 44,  # one significant digit, 45 digits of text (Rounded in boto3's context)
    "1." + "0" * 45,  # trailing zeros past 38 digits
    "9.9999999999999999999999999999999999999E-130",  # 38 digits at the bottom (Underflow)
    "-1.2345678901234567890123456789012345678E-130",
    "1.000",
    "1E+100",
    "17.00000000000000000000",
    "1E-130",
    "-1E-130",
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "12345678901234567890123456789012345678",
    "0",
    "-0",
    "0.000",
]


@pytest.mark.parametrize("text", LEGAL_NUMBERS)
def test_every_dynamodb_legal_number_decodes_exactly(text: str) -> None:
    """A number DynamoDB can store decodes, alone and in a page, to Decimal(text)."""
    assert decode_value({"N": text}) == Decimal(text)
    assert decode_value({"NS": [text]}) == {Decimal(text)}
    wire = {"n": {"N": text}, "l": {"L": [{"N": text}]}, "m": {"M": {"n": {"N": text}}}}
    page = {
        "Records": [
            {
                "eventID": "e",
                "eventName": "INSERT",
                "dynamodb": {"Keys": {"pk": {"N": text}}, "NewImage": wire, "SequenceNumber": "1"},
            }
        ]
    }
    (record,), _, malformed = decode_page(json.dumps(page).encode(), "s")
    assert malformed == []
    assert record.keys == {"pk": Decimal(text)}
    assert record.new_image == {
        "n": Decimal(text),
        "l": [Decimal(text)],
        "m": {"n": Decimal(text)},
    }


@pytest.mark.parametrize(
    "text",
    ["1234567890123456789012345678901234567891", "1.2345678901234567890123456789012345678E-131"],
)
def test_numbers_dynamodb_cannot_store_are_record_errors(text: str) -> None:
    """39 significant digits, or a magnitude below 1E-130, is malformed (dead-lettered)."""
    with pytest.raises(RecordError):
        decode_value({"N": text})


@st.composite
def legal_number_text(draw: st.DrawFn) -> str:
    significant = draw(st.integers(min_value=1, max_value=10**38 - 1))
    digits = str(significant).rstrip("0") or "0"
    magnitude = draw(st.integers(min_value=-130, max_value=125))  # of the leading digit
    zeros = "0" * draw(st.integers(min_value=0, max_value=20))
    sign = draw(st.sampled_from(["", "-"]))
    exponent = magnitude - (len(digits) - 1)
    form = draw(st.sampled_from(["e", "plain"]))
    if form == "e" or not -60 <= exponent <= 60:
        mantissa = digits[0] + ("." + digits[1:] + zeros if len(digits) > 1 or zeros else "")
        return f"{sign}{mantissa}E{magnitude:+d}"
    text = str(Decimal(f"{digits}E{exponent}").__format__("f"))
    return sign + (text + ("." if "." not in text and zeros else "") + zeros)


@settings(max_examples=400, deadline=None)
@given(legal_number_text())
def test_decoding_legal_numbers_equals_decimal_and_boto3(text: str) -> None:
    """Every DynamoDB-legal number decodes to Decimal(text); to boto3's value where it has one."""
    value = decode_value({"N": text})
    assert value == Decimal(text)
    try:
        boto3_value = TypeDeserializer().deserialize({"N": text})
    except ArithmeticError:
        return
    assert value.as_tuple() == boto3_value.as_tuple()


@pytest.mark.parametrize("bad", [{}, {"S": "a", "N": "1"}, "text", {"M": {"x": {}}}])
def test_malformed_values_in_images_are_record_errors_on_every_path(bad: Any) -> None:
    """A malformed AttributeValue (DynamoDB Local streams an empty map as {}) is a RecordError
    whether the image is decoded, written back or turned into a webhook body."""
    image = {"pk": {"S": "1"}, "bad": bad}
    for convert in (decode_image, to_client_image, plain_image):
        with pytest.raises(RecordError):
            convert(image)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_strings, client_values, max_size=6))
def test_an_image_from_its_json_bytes_equals_type_deserializer(image: dict[str, Any]) -> None:
    """The straight-from-bytes image decoder gives TypeDeserializer's values exactly
    (reprs too: Decimal exponents, Binary, sets)."""
    deserialize = TypeDeserializer().deserialize
    expected = {k: deserialize(v) for k, v in image.items()}
    data = json.dumps({k: to_wire(v) for k, v in image.items()}).encode()
    decoded = decode_image_json(data)
    assert decoded == expected
    assert repr(decoded) == repr(expected)


def _read_from_a_page(new_image: Any) -> StreamRecord:
    """The one MODIFY record of a GetRecords body carrying ``new_image``, as the reader gets
    it (its images still bytes)."""
    page = {
        "Records": [
            {
                "eventID": "e",
                "eventName": "MODIFY",
                "dynamodb": {
                    "Keys": {"pk": {"S": "1"}},
                    "NewImage": new_image,
                    "SequenceNumber": "1",
                },
            }
        ]
    }
    (record,), _, _ = decode_page(json.dumps(page).encode(), "s")
    return record


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ({"a": {"S": "x", "N": "1"}}, "exactly one type tag"),
        ({"a": {}}, "exactly one type tag"),
        ({"a": {"Q": "1"}}, "unknown AttributeValue type tag"),
        ({"a": {"N": "NaN"}}, "malformed N"),
        ({"a": {"N": "1" * 39}}, "malformed N"),
        ({"a": {"B": "not base64!"}}, "not valid base64"),
        ({"a": {"M": {"b": {"L": [{"S": "x", "BOOL": True}]}}}}, "malformed M value"),
    ],
)
def test_a_malformed_image_read_from_a_page_fails_as_before(
    image: dict[str, Any], reason: str
) -> None:
    """The bytes path takes no malformed image: the record raises the documented
    RecordError naming the problem, as the DynamoDB JSON path always did."""
    assert decode_image_json(json.dumps(image).encode()) is None
    record = _read_from_a_page(image)
    with pytest.raises(RecordError, match=reason):
        _ = record.new_image
    with pytest.raises(RecordError, match=reason):
        decode_image(image)


def test_reading_an_image_keeps_its_dynamodb_json_for_later() -> None:
    """Decoding NewImage straight from its bytes still leaves the wire form to whoever wants
    it afterwards (batch_write, webhook bodies, filters on images)."""
    wire = {"n": {"N": "1.50"}, "b": {"B": "AP8="}, "ss": {"SS": ["b", "a"]}}
    record = _read_from_a_page(wire)
    assert record.new_image == {"n": Decimal("1.50"), "b": Binary(b"\x00\xff"), "ss": {"a", "b"}}
    assert record.wire_new_image == wire
    assert record.raw["dynamodb"]["NewImage"] == wire
