"""The batch_write consumer against the moto server."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.batch_write import build, item_size
from processor.core.consumer import BatchResult
from processor.core.records import StreamRecord
from processor.errors import ConfigError
from processor.sources.kinesis import from_kinesis
from processor.testing import create_table, kds_payload, make_record, scan_all

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


def test_items_over_dynamodb_limits_are_rejected_before_any_call(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Over 400 KB, a partition key over 2048 bytes, a sort key over 1024 bytes, an empty key:
    each is rejected with the limit it breaks; the rest of the batch is written."""
    table = f"limits-{unique}"
    create_table(dynamodb, table, stream_view=None)
    ctx = context(endpoint=endpoint)
    consumer = build({"table": table}, ctx)
    big = put("a", "big", blob={"S": "x" * (400 * 1024)})
    long_pk = put("p" * 2049, "1")
    long_sk = put("a", "s" * 1025)
    empty = put("a", "")
    fine = put("a", "fine", blob={"S": "x" * (390 * 1024)})
    result = consumer([big, long_pk, long_sk, empty, fine])
    assert isinstance(result, BatchResult)
    assert not result.failed_event_ids
    reasons = result.rejected
    assert "400 KB" in reasons[big.event_id]
    assert "allows 2048" in reasons[long_pk.event_id]
    assert "allows 1024" in reasons[long_sk.event_id]
    assert "empty" in reasons[empty.event_id]
    assert set(items(dynamodb, table)) == {("a", "fine")}
    assert ctx.stats["batch_write_calls"] == 1


def test_item_size_follows_dynamodb_rules() -> None:
    assert item_size({"pk": {"S": "abc"}}) == 2 + 3
    assert item_size({"n": {"N": "12345"}}) == 1 + 4  # (5 digits + 1) // 2 + 1
    assert item_size({"b": {"B": b"\x00\x01"}, "t": {"BOOL": True}}) == 1 + 2 + 1 + 1
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1


def test_concurrent_calls_write_everything(endpoint: str, dynamodb: Any, unique: str) -> None:
    table = f"concurrent-{unique}"
    create_table(dynamodb, table, stream_view=None)
    ctx = context(endpoint=endpoint)
    consumer = build({"table": table, "concurrency": 4}, ctx)
    assert consumer([put(f"t{i % 7}", f"{i:04d}", v={"N": str(i)}) for i in range(500)]) is None
    assert len(items(dynamodb, table)) == 500
    assert ctx.stats["batch_write_calls"] == 20
    assert ctx.stats["consumed_capacity_units"] > 0
    consumer.close()


def versioned_put(sk: str, seq: int, value: str) -> StreamRecord:
    keys = {"pk": {"S": "TENANT#a"}, "sk": {"S": sk}}
    return make_record(
        keys,
        event_name="MODIFY",
        new_image={**keys, "value": {"S": value}},
        sequence_number=str(100000000000000000000 + seq),
    )


def versioned_remove(sk: str, seq: int) -> StreamRecord:
    keys = {"pk": {"S": "TENANT#a"}, "sk": {"S": sk}}
    return make_record(keys, event_name="REMOVE", sequence_number=str(100000000000000000000 + seq))


def test_versioned_a_replayed_older_record_does_not_overwrite_a_newer_projection(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    table = f"versioned-{unique}"
    create_table(dynamodb, table, stream_view=None)
    ctx = context(endpoint=endpoint)
    consumer = build({"table": table, "versioned": True}, ctx)
    assert consumer([versioned_put("1", 5, "v5"), versioned_put("2", 5, "v5")]) is None
    # a replay from earlier in the stream: older versions of both, and the same one again
    assert consumer([versioned_put("1", 3, "v3"), versioned_put("2", 5, "v5-again")]) is None
    stored = items(dynamodb, table)
    assert stored[("TENANT#a", "1")]["value"]["S"] == "v5"
    assert stored[("TENANT#a", "2")]["value"]["S"] == "v5"
    assert stored[("TENANT#a", "1")]["_dsp_version"]["S"] == str(100000000000000000000 + 5).zfill(
        40
    )
    assert ctx.stats["stale_skipped"] == 2
    # a newer change applies
    assert consumer([versioned_put("1", 9, "v9")]) is None
    assert items(dynamodb, table)[("TENANT#a", "1")]["value"]["S"] == "v9"
    # a newer delete applies; an older delete replayed later does nothing
    assert consumer([versioned_remove("2", 7)]) is None
    assert ("TENANT#a", "2") not in items(dynamodb, table)
    assert consumer([versioned_remove("1", 8)]) is None
    assert items(dynamodb, table)[("TENANT#a", "1")]["value"]["S"] == "v9"


def test_versioned_tombstones_keep_a_deleted_item_deleted_under_replay(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    table = f"tombstones-{unique}"
    create_table(dynamodb, table, stream_view=None)
    consumer = build(
        {"table": table, "versioned": True, "tombstone_ttl_s": 3600}, context(endpoint=endpoint)
    )
    consumer([versioned_put("1", 5, "v5")])
    consumer([versioned_remove("1", 6)])
    consumer([versioned_put("1", 5, "v5")])  # replayed: must not bring it back
    (item,) = items(dynamodb, table).values()
    assert item["_dsp_deleted"] == {"BOOL": True}
    assert "value" not in item
    assert int(item["_dsp_expires"]["N"]) > 0


def kds_put(sk: str, created_us: int, position: int, value: str) -> StreamRecord:
    keys = {"pk": {"S": "TENANT#a"}, "sk": {"S": sk}}
    image = {**keys, "value": {"S": value}}
    payload = kds_payload(keys, event_name="MODIFY", new_image=image, created_us=created_us)
    return from_kinesis(payload, str(position))


def test_versioned_on_kinesis_orders_by_creation_time_not_by_position(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Kinesis positions are not versions: an older change that arrives later (a higher
    position) must not overwrite a newer one; the creation time (µs) decides."""
    table = f"versioned-kds-{unique}"
    create_table(dynamodb, table, stream_view=None)
    ctx = context(endpoint=endpoint)
    consumer = build({"table": table, "versioned": True}, ctx)
    assert consumer([kds_put("1", 1_721_011_165_000_200, 10, "newer")]) is None
    assert consumer([kds_put("1", 1_721_011_165_000_100, 11, "older, late")]) is None
    assert items(dynamodb, table)[("TENANT#a", "1")]["value"]["S"] == "newer"
    assert ctx.stats["stale_skipped"] == 1
    assert consumer([kds_put("1", 1_721_011_165_000_300, 12, "newest")]) is None
    assert items(dynamodb, table)[("TENANT#a", "1")]["value"]["S"] == "newest"
