"""The native image walk (processor/core/_images.c, ADR 0020) against references it did not
write: boto3's TypeDeserializer for every legal value, and the pure-Python decoder for hostile
ones. Also: it is built here, it leaks nothing, and deep nesting is an error, not a crash."""

from __future__ import annotations

import binascii
import gc
import json
import tracemalloc
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from processor.core import _images, values
from processor.core.values import decode_image, decode_image_json, decode_value
from processor.errors import RecordError
from tests.unit.core.test_records import _strings, client_values, to_wire


def test_the_native_walk_is_built_here() -> None:
    """`make install` compiles it (pyproject's ext-modules). Built without a C compiler the
    Python decoder takes over silently, about half as fast; here that would be a bug."""
    assert values.NATIVE, "processor/core/_images.c was not built: is gcc installed?"


#: Every way an image is decoded: natively from bytes and from dicts, and the pure-Python
#: walk a build without a C compiler uses (from bytes and from dicts).
PATHS: dict[str, Callable[[Any], Any]] = {
    "native from bytes": lambda image: decode_image_json(json.dumps(image).encode()),
    "native from dicts": decode_image,
    "python from bytes": lambda image: values._decode_json_in_python(json.dumps(image).encode()),
    "python from dicts": values._walk_in_python,
}


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=300, deadline=None)
@given(image=st.dictionaries(_strings, client_values, max_size=6))
def test_every_path_gives_type_deserializers_values(path: str, image: dict[str, Any]) -> None:
    """Exactly TypeDeserializer's values and reprs (Decimal exponents, Binary, sets)."""
    deserialize = TypeDeserializer().deserialize
    expected = {k: deserialize(v) for k, v in image.items()}
    declined = dict(values.DECLINED)
    decoded = PATHS[path]({k: to_wire(v) for k, v in image.items()})
    assert decoded == expected
    assert repr(decoded) == repr(expected)
    # a valid image is taken by the walk it was given to, not by the slow path behind it: a
    # walk that declined everything would give the same values and pass the asserts above
    assert dict(values.DECLINED) == declined


# -- hostile values: near-misses of every tag ------------------------------------------------

_NUMBERS = st.sampled_from(
    [
        "1",
        "-0",
        "1.50",
        "1e5",
        "1E-130",
        "9.9999999999999999999999999999999999999E+125",
        "1" + "0" * 44,  # legal, but boto3's context refuses it: the Python decoder's job
        "1" * 39,  # too many digits
        "1E-131",
        "NaN",
        "-Infinity",
        "sNaN",
        "1_000",
        " 1",
        "1 ",
        "",
        "+",
        "0x10",
        "\u0661\u0662",  # Arabic-Indic digits: Decimal takes them
        "1e",
        ".5",
        "5.",
    ]
)
_BASE64 = st.sampled_from(
    ["", "AA==", "AAE=", "AAEC", "A===", "AAA", "AA=A", "=AA=", " AA==", "AA==\n", "\u00ff", "-_8="]
)
_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
_WELL_FORMED: list[dict[str, Any]] = [
    {"S": "x"},
    {"N": "1"},
    {"B": "AA=="},
    {"SS": ["a"]},
    {"NS": ["1"]},
    {"BS": ["AA=="]},
    {"BOOL": True},
    {"NULL": True},
    {"L": []},
    {"M": {}},
]
_HOSTILE_SCALAR = st.one_of(
    _NUMBERS.map(lambda n: {"N": n}),
    _BASE64.map(lambda b: {"B": b}),
    st.lists(_NUMBERS, max_size=3).map(lambda v: {"NS": v}),
    st.lists(_BASE64, max_size=3).map(lambda v: {"BS": v}),
    st.lists(st.one_of(st.text(max_size=3), _LEAF), max_size=3).map(lambda v: {"SS": v}),
    st.one_of(st.text(max_size=5), _LEAF).map(lambda v: {"S": v}),
    _LEAF.map(lambda v: {"BOOL": v}),
    _LEAF.map(lambda v: {"NULL": v}),
    _LEAF.map(lambda v: {"L": v}),
    _LEAF.map(lambda v: {"M": v}),
    st.dictionaries(st.sampled_from(["S", "N", "X", "s", "BOOL"]), _LEAF, max_size=2),
    # two well-formed tags in one value
    st.lists(st.sampled_from(_WELL_FORMED), min_size=2, max_size=2).map(lambda v: v[0] | v[1]),
)
_HOSTILE = st.recursive(
    _HOSTILE_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: {"L": v}),
        st.dictionaries(st.text(max_size=3), inner, max_size=3).map(lambda v: {"M": v}),
    ),
    max_leaves=8,
)


def _python_decoder(image: Any) -> dict[str, Any]:
    """The reference: the pure-Python decoder, value by value (it names what is wrong)."""
    if not isinstance(image, Mapping):
        raise RecordError("an image is a JSON object")
    return {name: decode_value(value) for name, value in image.items()}


@settings(max_examples=1500, deadline=None)
@given(st.dictionaries(st.text(max_size=3), _HOSTILE, max_size=4))
@example({"n": {"NS": ["1", "1.0"]}})  # equal numbers: one set member, the first one
@example({"b": {"BS": ["AA==", "AA=="]}})
@example({"": {"S": None, "SS": []}})
@example({"n": {"N": "1" + "0" * 44}})
@example({"a": {"S": "x", "N": "1"}})
@example({"a": {"M": {"b": {"L": [{"S": "x", "BOOL": True}]}}}})
@example({"n": {"N": "1e"}})  # boto3's context makes it NaN without raising (found here)
@example({"n": {"NS": ["1", ""]}})
def test_every_path_agrees_with_the_python_decoder_on_hostile_values(image: Any) -> None:
    """What the Python decoder takes, every path gives identically (or, from bytes, leaves to
    it: None); what it refuses, decode_image refuses with the same RecordError, and the bytes
    paths do not take."""
    reason: str | None
    try:
        expected = _python_decoder(image)
    except RecordError as exc:
        reason = str(exc)
    else:
        reason = None
    if reason is not None:
        with pytest.raises(RecordError) as refused:
            decode_image(image)
        assert str(refused.value) == reason
        assert decode_image_json(json.dumps(image).encode()) is None
        return
    for path, decode in PATHS.items():
        try:
            got = decode(image)
        except (ValueError, ArithmeticError, TypeError, KeyError, AttributeError):
            assert path.startswith("python"), path  # the Python walk's own not-taken errors
            continue
        if got is None:
            assert path.endswith("bytes"), path
            continue
        assert got == expected, path
        assert repr(got) == repr(expected), path


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    """100,000 nested lists: no C stack overflow; the bytes path declines, and decoding the
    DynamoDB JSON says it is nested too deeply."""
    depth = 100_000
    data = '{"a":' + '{"L":[' * depth + '{"S":"x"}' + "]}" * depth + "}"
    assert decode_image_json(data.encode()) is None
    nested: Any = {"S": "x"}
    for _ in range(2_000):  # deeper than the recursion limit, shallow enough to build here
        nested = {"L": [nested]}
    with pytest.raises(RecordError, match="nested too deeply"):
        decode_image({"a": nested})


def test_the_walk_leaks_nothing() -> None:
    """Decoding, and refusing half-way through, 5,000 times each leaves no memory behind (a
    missed reference in the C walk would keep every value of every image)."""
    good: dict[str, Any] = {
        "s": {"S": "x"},
        "n": {"N": "1.5"},
        "b": {"B": "AAEC"},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2"]},
        "bs": {"BS": ["AA==", "AQ=="]},
        "t": {"BOOL": True},
        "z": {"NULL": True},
        "l": {"L": [{"N": "2"}, {"M": {"k": {"S": "v"}}}]},
        "m": {"M": {"k": {"N": "3"}}},
    }
    bad = {**good, "zz": {"M": {"a": {"S": "x"}, "b": {"BS": ["AA==", "!"]}}}}
    good_bytes, bad_bytes = json.dumps(good).encode(), json.dumps(bad).encode()

    def round_trip() -> None:
        assert decode_image_json(good_bytes) is not None
        assert decode_image_json(bad_bytes) is None
        assert decode_image(good) is not None
        with pytest.raises(RecordError):
            decode_image(bad)

    for _ in range(200):  # warm caches (Decimal contexts, interned strings, free lists)
        round_trip()
    tracemalloc.start()
    try:
        gc.collect()  # refused decodes leave exception/traceback cycles until a collection
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(5_000):
            round_trip()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one leaked object per decode would be 5,000 x (at least 16 bytes) = 80 KB at least
    assert after - before < 40_000


def test_a_failed_configure_leaves_the_walk_as_it_was() -> None:
    """configure() checks everything before it changes anything (a half-configured module
    would call a NULL create_decimal)."""
    image: dict[str, Any] = {"n": {"N": "1.50"}, "s": {"SS": ["b", "a"]}}
    before = decode_image_json(json.dumps(image).encode())
    with pytest.raises(TypeError):
        _images.configure(
            values._create_decimal, binascii.a2b_base64, Binary, int, msgspec.UNSET, ()
        )
    declined = dict(values.DECLINED)
    assert decode_image_json(json.dumps(image).encode()) == before
    assert decode_image(image) == before
    assert dict(values.DECLINED) == declined  # still taken natively, by the old configuration
