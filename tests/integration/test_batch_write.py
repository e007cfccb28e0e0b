"""The batch_write consumer against the moto server."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.batch_write import build
from processor.errors import ConfigError
from processor.records import StreamRecord
from processor.testing import create_table, make_record, scan_all

from .helpers import context


def put(pk: str, sk: str, **attrs: Any) -> StreamRecord:
    image = {"pk": {"S": pk}, "sk": {"S": sk}, **attrs}
    return make_record({"pk": {"S": pk}, "sk": {"S": sk}}, event_name="MODIFY", new_image=image)


def remove(pk: str, sk: str) -> StreamRecord:
    return make_record({"pk": {"S": pk}, "sk": {"S": sk}}, event_name="REMOVE")


def items(dynamodb: Any, table: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["pk"]["S"], i["sk"]["S"]): i for i in scan_all(dynamodb, table)}


def test_the_last_change_of_a_key_wins_within_one_batch(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Several changes to one key in a batch end as the last, in one call BatchWriteItem accepts."""
    table = f"mirror-{unique}"
    create_table(dynamodb, table, stream_view=None)
    ctx = context(endpoint=endpoint)
    consumer = build({"table": table}, ctx)
    consumer(
        [
            put("a", "1", v={"N": "1"}),
            put("a", "1", v={"N": "2"}),
            put("b", "1"),
            remove("b", "1"),
            put("a", "1", v={"N": "3"}),
        ]
    )
    got = items(dynamodb, table)
    assert set(got) == {("a", "1")}
    assert got[("a", "1")]["v"] == {"N": "3"}
    assert ctx.stats["batch_write_calls"] == 1


def test_more_than_25_requests_are_split_into_calls(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """60 distinct keys take three BatchWriteItem calls and all land."""
    table = f"mirror-{unique}"
    create_table(dynamodb, table, stream_view=None)
    ctx = context(endpoint=endpoint)
    build({"table": table}, ctx)([put("t", f"{i:03d}") for i in range(60)])
    assert len(items(dynamodb, table)) == 60
    assert ctx.stats["batch_write_calls"] == 3
    assert ctx.stats["consumed_capacity_units"] > 0  # ReturnConsumedCapacity (moto: 1 per call)


def test_images_are_written_as_received_including_binary_and_sets(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Every attribute type survives the pass-through unchanged."""
    table = f"mirror-{unique}"
    create_table(dynamodb, table, stream_view=None)
    attrs = {
        "b": {"B": "AP8="},
        "bs": {"BS": ["YQ==", "Yg=="]},
        "n": {"N": "12345678901234567890123456789012345678"},
        "m": {"M": {"l": {"L": [{"S": "x"}, {"NULL": True}, {"BOOL": True}]}}},
        "ss": {"SS": ["x", "y"]},
    }
    build({"table": table}, context(endpoint=endpoint))([put("a", "1", **attrs)])
    got = items(dynamodb, table)[("a", "1")]
    assert got["b"] == {"B": b"\x00\xff"}
    assert sorted(got["bs"]["BS"]) == [b"a", b"b"]
    assert got["n"] == attrs["n"]
    assert got["m"] == attrs["m"]
    assert sorted(got["ss"]["SS"]) == ["x", "y"]


def test_transform_puts_deletes_and_skips(endpoint: str, dynamodb: Any, unique: str) -> None:
    """A transform's Put, Delete and None are honoured."""
    table = f"proj-{unique}"
    create_table(dynamodb, table, stream_view=None)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "gone"}, "sk": {"S": "1"}})
    ctx = context(endpoint=endpoint)
    consumer = build({"table": table, "transform": "tests.integration.transforms:project"}, ctx)
    consumer(
        [
            put("a", "1", total={"N": "9.99"}),
            put("d", "1", status={"S": "draft"}),
            remove("gone", "1"),
        ]
    )
    got = items(dynamodb, table)
    assert set(got) == {("a", "1")}
    assert got[("a", "1")]["total"] == {"N": "9.99"}
    assert ctx.stats["skipped"] == 1


def test_missing_target_table_is_a_configuration_error(endpoint: str) -> None:
    """A target table that does not exist is refused at start, naming the option."""
    with pytest.raises(ConfigError) as info:
        build({"table": "no-such-table"}, context(endpoint=endpoint))
    assert info.value.key == "routes.0.options.table"
