"""DynamoDB AttributeValues decoded: exactly TypeDeserializer's values (Decimal, Binary, sets),
the boto3 client form, and plain JSON (numbers exact, sets sorted, binary base64)."""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Callable, Mapping
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from processor.errors import RecordError

#: boto3's context for DynamoDB numbers (``boto3.dynamodb.types.DYNAMODB_CONTEXT``, which a
#: test compares this with), built here: importing it imports all of boto3, about 80 ms of
#: a Lambda cold start whose routes call no AWS service
DYNAMODB_CONTEXT = Context(
    Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow]
)
_create_decimal: Callable[[str], Decimal] = DYNAMODB_CONTEXT.create_decimal
_binary_type: Callable[[bytes], Any] | None = None


def _binary(value: bytes) -> Any:
    """``boto3.dynamodb.types.Binary(value)``; boto3 is imported at the first binary value,
    not at start (see DYNAMODB_CONTEXT)."""
    global _binary_type  # noqa: PLW0603 - resolved once
    if _binary_type is None:
        from boto3.dynamodb.types import Binary  # noqa: PLC0415

        _binary_type = Binary
    return _binary_type(value)


__all__ = [
    "AttributeValue",
    "Image",
    "decode_image",
    "decode_image_json",
    "decode_json",
    "decode_value",
    "plain_image",
    "to_client_image",
]


#: One attribute in DynamoDB JSON, e.g. ``{"S": "abc"}`` or ``{"N": "1.5"}``.
AttributeValue = Mapping[str, Any]


#: An item in DynamoDB JSON: attribute name to AttributeValue.
Image = Mapping[str, AttributeValue]


def _b64(value: str | bytes) -> bytes:
    if isinstance(value, bytes):  # already decoded (botocore's parsed form)
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RecordError(f"binary attribute is not valid base64: {value[:40]!r}") from exc


def _decode_s(v: Any) -> Any:
    return v


def _decode_n(v: Any) -> Any:
    try:
        number = _create_decimal(v)
    except ArithmeticError:  # boto3's context refuses some numbers DynamoDB stores
        return _exact_number(v)
    if not number.is_finite():  # DynamoDB stores no NaN/Infinity: the value is malformed
        raise ValueError("not a number DynamoDB can store")
    return number


def _exact_number(text: str) -> Decimal:
    """``Decimal(text)`` for a number DynamoDB can store that boto3's context refuses.

    boto3's ``DYNAMODB_CONTEXT`` traps ``Rounded`` and ``Underflow``, so it fails on legal
    values such as ``"1" + "0" * 44`` (one significant digit, 45 digits of text) or
    ``"9.9999999999999999999999999999999999999E-130"``. DynamoDB's own rules are: at most
    38 significant digits, magnitude from 1E-130 to below 1E+126, or zero.
    """
    number = Decimal(text)
    if not number.is_finite():
        raise ValueError("not a number DynamoDB can store")
    _sign, digits, exponent = number.as_tuple()
    significant = "".join(map(str, digits)).strip("0")
    if not significant:
        return number  # zero, however written
    if len(significant) > 38:
        raise ValueError("more than 38 significant digits")
    assert isinstance(exponent, int)
    magnitude = len(digits) + exponent - 1  # the exponent of the leading digit
    if not -130 <= magnitude <= 125:
        raise ValueError("outside DynamoDB's range (1E-130 to 9.99...E+125)")
    return number


def _decode_b(v: Any) -> Any:
    return _binary(_b64(v))


def _decode_ss(v: Any) -> Any:
    return set(v)


def _decode_ns(v: Any) -> Any:
    return {_decode_n(n) for n in v}


def _decode_bs(v: Any) -> Any:
    return {_binary(_b64(b)) for b in v}


def _decode_bool(v: Any) -> Any:
    return v


def _decode_null(v: Any) -> Any:
    return None


def _decode_l(v: Any) -> Any:
    return [_fast(item) for item in v]


def _decode_m(v: Any) -> Any:
    return {name: _fast(item) for name, item in v.items()}


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "S": _decode_s,
    "N": _decode_n,
    "B": _decode_b,
    "SS": _decode_ss,
    "NS": _decode_ns,
    "BS": _decode_bs,
    "BOOL": _decode_bool,
    "NULL": _decode_null,
    "L": _decode_l,
    "M": _decode_m,
}


def _fast(value: Any) -> Any:
    """decode_value for well-formed input: the common tags inline, the rest dispatched."""
    ((tag, raw),) = value.items()
    if tag == "S":
        return raw
    if tag == "N":
        try:
            number = _create_decimal(raw)
        except ArithmeticError:  # boto3's context refuses some numbers DynamoDB stores
            return _exact_number(raw)
        if not number.is_finite():
            raise ValueError("not a number DynamoDB can store")
        return number
    if tag == "M":
        return {name: _fast(item) for name, item in raw.items()}
    if tag == "L":
        return [_fast(item) for item in raw]
    if tag == "BOOL":
        return raw
    if tag == "NULL":
        return None
    return _DECODERS[tag](raw)


def decode_value(value: AttributeValue) -> Any:
    """Decode one AttributeValue in DynamoDB JSON to the value TypeDeserializer returns."""
    if not isinstance(value, Mapping):
        raise RecordError(f"an AttributeValue is a JSON object, got {type(value).__name__}")
    if len(value) != 1:
        tags = sorted(str(tag) for tag in value)[:5]
        raise RecordError(f"an AttributeValue has exactly one type tag, got {tags}")
    ((tag, raw),) = value.items()
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise RecordError(f"unknown AttributeValue type tag {tag!r}")
    try:
        return decoder(raw)
    except RecordError:
        raise
    except RecursionError:
        raise RecordError(f"{tag} value is nested too deeply") from None
    except (ArithmeticError, TypeError, ValueError, AttributeError, KeyError) as exc:
        raise RecordError(f"malformed {tag} value {raw!r:.60}: {exc}") from exc


def decode_image(image: Image | None) -> dict[str, Any] | None:
    """Decode a whole item (or ``None`` when the stream view does not carry it)."""
    if image is None:
        return None
    if type(image) is not dict and not isinstance(image, Mapping):
        raise RecordError(f"an image is a JSON object, got {type(image).__name__}")
    try:
        return _walk(image)
    except _NOT_TAKEN:
        # not taken (malformed somewhere, a number boto3's context refuses, a Mapping that
        # is not a dict): decoded again slowly, which names the offending value
        DECLINED["dicts"] += 1
        return {name: decode_value(value) for name, value in image.items()}


#: how often the fast walk declined an image and the slow path took it, by input ("dicts",
#: "bytes"): tests see a walk that declines what it should take (approximate under threads)
DECLINED: Counter[str] = Counter()

#: msgspec's generic JSON decoder (records use it for images wanted as DynamoDB JSON)
decode_json = msgspec.json.Decoder().decode

#: What a decode that does not take an image raises (the Python decoder then names it).
_NOT_TAKEN = (
    msgspec.DecodeError,
    RecordError,
    ArithmeticError,
    TypeError,
    ValueError,
    AttributeError,
    KeyError,
    RecursionError,
)


class _Typed(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One AttributeValue as msgspec decodes it straight from JSON: one field per type tag,
    ``UNSET`` when absent (a JSON ``null`` under a tag does not fit and is left to the
    Python decoder, which refuses it as a second tag).

    Not tracked by the cyclic GC (``gc=False``) and far cheaper to make and free than the
    dict per value of a generic decode; the native walk reads its fields (ADR 0020)."""

    S: str | UnsetType = UNSET
    N: str | UnsetType = UNSET
    B: str | UnsetType = UNSET
    SS: list[str] | UnsetType = UNSET
    NS: list[str] | UnsetType = UNSET
    BS: list[str] | UnsetType = UNSET
    BOOL: bool | UnsetType = UNSET
    NULL: bool | UnsetType = UNSET
    L: list[_Typed] | UnsetType = UNSET
    M: dict[str, _Typed] | UnsetType = UNSET


_decode_typed = msgspec.json.Decoder(dict[str, _Typed]).decode


def _walk_in_python(image: Any) -> dict[str, Any]:
    if type(image) is not dict:
        raise ValueError("an image is a JSON object")
    return {name: _fast(value) for name, value in image.items()}


def _decode_json_in_python(data: bytes | msgspec.Raw) -> dict[str, Any]:
    return _walk_in_python(decode_json(data))


#: Whether the native walk (processor/core/_images.c) is built; without a C compiler the
#: same values are decoded in Python, about half as fast.
NATIVE: bool
_walk: Callable[[Any], dict[str, Any]]
_walk_json: Callable[[bytes | msgspec.Raw], dict[str, Any]]
try:
    from processor.core import _images

    _images.configure(
        _create_decimal,
        binascii.a2b_base64,
        _binary,
        _Typed,
        UNSET,
        tuple(_Typed.__dict__[tag] for tag in _Typed.__struct_fields__),
    )
except (ImportError, TypeError):  # not built, or a msgspec whose Structs it cannot read
    NATIVE = False
    _walk = _walk_in_python
    _walk_json = _decode_json_in_python
else:
    NATIVE = True
    _walk = _images.walk
    _walk_typed = _images.walk_typed

    def _walk_json(data: bytes | msgspec.Raw) -> dict[str, Any]:
        return _walk_typed(_decode_typed(data))


def decode_image_json(data: bytes | msgspec.Raw) -> dict[str, Any] | None:
    """:func:`decode_image` of an image still in its JSON bytes (ADR 0020): msgspec decodes
    each AttributeValue into a :class:`_Typed` and the native walk turns them into
    TypeDeserializer's values, with no DynamoDB JSON dicts in between. ``None`` for anything
    it does not take (a malformed value, an odd type, an image that is not an object): the
    caller then decodes it as before, with the same values and errors."""
    try:
        return _walk_json(data)
    except _NOT_TAKEN:
        DECLINED["bytes"] += 1
        return None


def _client_value(value: AttributeValue) -> dict[str, Any]:
    ((tag, raw),) = value.items()
    if tag == "B":
        return {"B": _b64(raw)}
    if tag == "BS":
        return {"BS": [_b64(b) for b in raw]}
    if tag == "L":
        return {"L": [_client_value(v) for v in raw]}
    if tag == "M":
        return {"M": {k: _client_value(v) for k, v in raw.items()}}
    return {tag: raw}


def to_client_image(image: Image) -> dict[str, Any]:
    """The wire image in the form boto3's low-level client takes (binary as bytes).

    Only binary values change; everything else is passed through untouched, so an image
    read from the stream is written back without a decode/encode round trip. A malformed
    value (e.g. ``{}``, which DynamoDB Local writes for an empty map) is a RecordError.
    """
    try:
        return {name: _client_value(value) for name, value in image.items()}
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        for name, value in image.items():  # name the offending attribute
            if not isinstance(value, Mapping) or len(value) != 1:
                raise RecordError(
                    f"attribute {name!r} is not an AttributeValue with one type tag"
                ) from None
        raise RecordError(f"malformed image: {exc}") from None


def _plain_value(value: AttributeValue) -> Any:
    ((tag, raw),) = value.items()
    if tag in {"S", "B", "BOOL"}:  # binary stays base64, as on the wire
        return raw
    if tag == "N":
        return Decimal(raw)
    if tag == "NULL":
        return None
    if tag == "SS":
        return sorted(raw)
    if tag == "NS":
        return sorted(Decimal(n) for n in raw)
    if tag == "BS":
        return sorted(raw, key=_b64)  # ordered by the bytes, shown as base64
    if tag == "L":
        return [_plain_value(v) for v in raw]
    if tag == "M":
        return {k: _plain_value(v) for k, v in raw.items()}
    raise RecordError(f"unknown AttributeValue type tag {tag!r}")


def plain_image(image: Image | None) -> dict[str, Any] | None:
    """The image as plain JSON values: exact Decimals, sets as sorted lists, binary base64.

    Built straight from the wire form (no TypeDeserializer round trip); encode the Decimals
    as JSON numbers (``msgspec.json.Encoder(decimal_format="number")``) to keep precision.
    """
    if image is None:
        return None
    try:
        return {name: _plain_value(value) for name, value in image.items()}
    except RecordError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, ArithmeticError) as exc:
        raise RecordError(f"malformed image: {exc}") from None
