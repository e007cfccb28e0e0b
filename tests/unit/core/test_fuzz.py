"""Hostile input to every decoder yields a value or our documented error, nothing else."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consumers.webhook.subscriptions import parse_item
from processor.core.values import decode_image, decode_image_json, decode_value
from processor.errors import ConfigError, RecordError, TransientError
from processor.settings import load_settings
from processor.sources.dynamodb.wire import decode_page

JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)
TAGS = st.sampled_from(["S", "N", "B", "SS", "NS", "BS", "BOOL", "NULL", "L", "M", "X"])
ATTRIBUTE = st.recursive(
    st.dictionaries(TAGS, JSON, min_size=0, max_size=2),
    lambda inner: st.one_of(
        st.fixed_dictionaries({"L": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"M": st.dictionaries(st.text(max_size=4), inner, max_size=3)}),
    ),
    max_leaves=10,
)


def record_like(attribute: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "eventID": st.one_of(st.text(max_size=5), st.integers()),
            "eventName": st.sampled_from(["INSERT", "MODIFY", "REMOVE", "UPSERT", 3]),
            "dynamodb": st.fixed_dictionaries(
                {
                    "Keys": st.dictionaries(st.text(max_size=3), attribute, max_size=2),
                    "SequenceNumber": st.one_of(
                        st.from_regex(r"[0-9]{1,25}", fullmatch=True), JSON
                    ),
                },
                optional={
                    "NewImage": st.dictionaries(st.text(max_size=3), attribute, max_size=3),
                    "OldImage": JSON,
                    "ApproximateCreationDateTime": JSON,
                },
            ),
        }
    )


PAGES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"Records": st.lists(st.one_of(record_like(ATTRIBUTE), JSON), max_size=4)},
        optional={"NextShardIterator": JSON},
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PAGES)
def test_the_page_decoder_takes_any_body(body: bytes) -> None:
    """Any GetRecords body decodes to records and malformed ones, or is a TransientError."""
    try:
        records, next_iterator, malformed = decode_page(body, "shard")
    except TransientError:
        return
    assert next_iterator is None or isinstance(next_iterator, str)
    for record in records:  # what was accepted reads without surprises, or as a RecordError
        with contextlib.suppress(RecordError):
            _ = (record.keys, record.new_image, record.old_image, record.event_name)
    for _raw, error in malformed:
        assert isinstance(error, RecordError)


@settings(max_examples=400, deadline=None)
@given(st.one_of(ATTRIBUTE, JSON))
def test_the_attribute_decoder_takes_any_value(value: Any) -> None:
    """Any JSON as an AttributeValue decodes or raises RecordError."""
    with contextlib.suppress(RecordError):
        decode_value(value)
    with contextlib.suppress(RecordError):
        decode_image({"a": value} if not isinstance(value, dict) else value)


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.dictionaries(st.text(max_size=4), ATTRIBUTE, max_size=4), JSON))
@example({"": {"S": None, "SS": []}})  # a null tag is still a tag (found by CI's run)
def test_the_image_decoder_from_bytes_agrees_with_the_dict_decoder(image: Any) -> None:
    """From JSON bytes, an image decodes to exactly what decode_image gives for the decoded
    JSON; whatever decode_image refuses (or cannot take) is left to it (None)."""
    fast = decode_image_json(json.dumps(image).encode())
    try:
        expected = decode_image(image)
    except RecordError:
        assert fast is None
        return
    if fast is not None:
        assert fast == expected
        assert repr(fast) == repr(expected)  # Decimal exponents, set and dict order too


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["tenant", "url", "events", "secret", "secrets", "active"]),
        ATTRIBUTE,
        max_size=6,
    )
)
def test_the_subscriptions_loader_takes_any_item(item: dict[str, Any]) -> None:
    """Any table item is a Subscription or a ValueError saying what is wrong."""
    with contextlib.suppress(ValueError):
        parse_item(item)


TOML_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=10),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
SECTIONS = st.sampled_from(
    ["stream", "checkpoints", "batch", "http", "aws", "dead_letter", "tenancy", "observability"]
)
KEYS = st.one_of(
    st.sampled_from(["table", "arn", "max_records", "allowed_networks", "path", "pattern", "x"]),
    st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(SECTIONS, st.dictionaries(KEYS, TOML_VALUES, max_size=3), max_size=4),
    st.dictionaries(
        st.sampled_from(
            ["DSP_BATCH__MAX_RECORDS", "DSP_STREAM__TABLE", "DSP_ROUTES", "DSP_HTTP__POOL_SIZE"]
        ),
        st.text(max_size=12),
        max_size=2,
    ),
    st.binary(max_size=60),
)
def test_the_settings_loader_takes_any_file_and_environment(
    tmp_path_factory: Any, sections: dict[str, dict[str, Any]], environ: dict[str, str], junk: bytes
) -> None:
    """Any TOML (or not TOML) and any DSP_ variables load or raise ConfigError."""
    directory = Path(tmp_path_factory.mktemp("cfg"))
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    for text in ("\n".join(lines), junk.decode("utf-8", "replace")):
        path = directory / "dsp.toml"
        path.write_text(text, encoding="utf-8")
        with contextlib.suppress(ConfigError):
            load_settings(path, environ=environ)
