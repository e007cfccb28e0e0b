"""The table adapter consumers use: DynamoDB's answers become the project's errors."""

from __future__ import annotations

from typing import Any

import pytest

from processor import ConditionFailed, DynamoDBTable, RecordError
from processor.testing import create_table


def test_a_missing_table_has_no_key_schema(dynamodb: Any, unique: str) -> None:
    """DescribeTable's ResourceNotFoundException is None (the caller names the config key)."""
    assert DynamoDBTable(dynamodb, f"absent-{unique}").key_attributes() is None


def test_writes_scans_and_refusals(dynamodb: Any, unique: str) -> None:
    """Batch writes land, a failed condition is ConditionFailed, an item DynamoDB refuses is a
    RecordError (dead-letter it, never retry), and scans follow every page."""
    name = f"tables-{unique}"
    create_table(dynamodb, name)
    table = DynamoDBTable(dynamodb, name)
    assert table.key_attributes() == ("pk", "sk")
    puts = [
        {"PutRequest": {"Item": {"pk": {"S": "t"}, "sk": {"S": f"{i:02d}"}, "v": {"N": "1"}}}}
        for i in range(25)
    ]
    answer = table.batch_write(puts)
    assert answer.unprocessed == []
    newer = {
        "ConditionExpression": "attribute_not_exists(v) OR v < :v",
        "ExpressionAttributeValues": {":v": {"N": "1"}},
    }
    with pytest.raises(ConditionFailed):
        table.write_if("PutItem", newer, Item={"pk": {"S": "t"}, "sk": {"S": "00"}})
    with pytest.raises(RecordError):
        table.batch_write([{"PutRequest": {"Item": {"pk": {"S": "t"}}}}])  # no sort key
    pages = list(table.scan_pages(Limit=10))
    assert sum(len(page) for page in pages) == 25
    assert len(pages) >= 3
