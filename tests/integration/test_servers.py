"""The local servers of processor.testing that the fixtures do not already exercise."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import boto3
import pytest

from processor.testing import create_table, moto_process


def test_moto_process_serves_dynamodb_from_its_own_process_until_left() -> None:
    """`moto_process` (the benchmarks' DynamoDB, out of the writer's interpreter) answers the
    real API on loopback and is gone once its block is left."""
    with moto_process() as endpoint:
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        create_table(dynamodb, "served-apart", stream_view=None)
        dynamodb.put_item(TableName="served-apart", Item={"pk": {"S": "a"}, "sk": {"S": "1"}})
        assert dynamodb.get_item(
            TableName="served-apart", Key={"pk": {"S": "a"}, "sk": {"S": "1"}}
        )["Item"] == {"pk": {"S": "a"}, "sk": {"S": "1"}}
        port = urlsplit(endpoint).port
        assert urlsplit(endpoint).hostname == "127.0.0.1"
    assert port is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
