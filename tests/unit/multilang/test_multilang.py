"""KCL MultiLang pieces that need no process: properties, settings, the checkpoint rule, the
record shape (the processes are in tests/system/test_multilang.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from processor.aws import clients_for
from processor.core.records import StreamRecord
from processor.errors import ConfigError
from processor.kclpy_daemon.properties import parse_properties, to_settings
from processor.kclpy_daemon.protocol import (
    SHARD_END,
    CheckpointRange,
    CheckpointRequest,
    adapter_document,
    kcl_record,
    parse_line,
)
from processor.settings import AwsSettings, load_settings

#: a StreamsMultiLangDaemon file as users have them (AWS's sample.properties, adapted)
SAMPLE = r"""
# The script that abides by the multi-language protocol. This script will
# be executed by the MultiLangDaemon, which will communicate with this script
# over STDIN and STDOUT according to the multi-language protocol.
executableName = python3 sample_kclpy_app.py --verbose
streamName = arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000
applicationName = orders-kcl
! another comment style
AWSCredentialsProvider = DefaultCredentialsProvider
processingLanguage = python/3.11
initialPositionInStream : TRIM_HORIZON
regionName us-east-1
maxRecords = 500
idleTimeBetweenReadsInMillis = 500
failoverTimeMillis = 15000
maxLeasesForWorker = 8
shutdownGraceMillis = 10000
timeoutInSeconds = 60
callProcessRecordsEvenForEmptyRecordList = true
workerId = worker-\
  one
"""


def test_a_users_properties_file_becomes_settings(tmp_path: Path) -> None:
    properties = parse_properties(SAMPLE)
    assert properties["executableName"] == "python3 sample_kclpy_app.py --verbose"
    assert properties["regionName"] == "us-east-1"
    assert properties["initialPositionInStream"] == "TRIM_HORIZON"
    assert properties["workerId"] == "worker-one"
    sections, unused = to_settings(properties)
    assert unused == ["processingLanguage"]  # AWSCredentialsProvider is honoured now
    settings = load_settings(None, environ={}, defaults=sections)
    assert settings.multilang is not None
    assert settings.multilang.executable == "python3 sample_kclpy_app.py --verbose"
    assert settings.multilang.shutdown_grace_s == 10
    assert settings.multilang.timeout_s == 60
    assert settings.multilang.call_process_records_even_for_empty is True
    assert settings.only_stream.arn is not None
    assert settings.only_stream.arn.endswith("stream/2026-01-01T00:00:00.000")
    assert (
        settings.only_stream.poll_interval_min_s == settings.only_stream.poll_interval_max_s == 0.5
    )
    assert settings.batch.max_records == 500
    assert settings.only_stream.get_records_limit == 500
    assert settings.checkpoints.application == "orders-kcl"
    assert settings.checkpoints.lease_timeout_s == 15
    assert settings.checkpoints.renew_interval_s == 5
    assert settings.checkpoints.max_leases == 8
    assert settings.checkpoints.owner == "worker-one"
    assert settings.routes == []


@pytest.mark.parametrize(("value", "cleanup"), [("false", False), ("true", True), (None, True)])
def test_the_kcls_lease_cleanup_switch_is_honoured(value: str | None, cleanup: bool) -> None:
    """cleanupLeasesUponShardCompletion (the KCL's default: true) is checkpoints.cleanup."""
    properties = parse_properties(SAMPLE)
    if value is not None:
        properties["cleanupLeasesUponShardCompletion"] = value
    sections, unused = to_settings(properties)
    assert "cleanupLeasesUponShardCompletion" not in unused
    assert load_settings(None, environ={}, defaults=sections).checkpoints.cleanup is cleanup


def test_environment_variables_override_the_properties() -> None:
    sections, _ = to_settings(parse_properties(SAMPLE))
    settings = load_settings(None, environ={"DSP_MULTILANG__TIMEOUT_S": "5"}, defaults=sections)
    assert settings.multilang is not None
    assert settings.multilang.timeout_s == 5


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"executableName": ""}, "executableName"),
        ({"streamName": "orders"}, "streamName"),
        ({"initialPositionInStream": "AT_TIMESTAMP"}, "initialPositionInStream"),
        ({"maxRecords": "many"}, "maxRecords"),
        ({"callProcessRecordsEvenForEmptyRecordList": "yes"}, "callProcess"),
        # where and as whom: refused when dsp cannot honour it, never ignored
        (
            {"AWSCredentialsProvider": "STSAssumeRoleSessionCredentialsProvider|arn:role"},
            "AWSCredentialsProvider",
        ),
        ({"AWSCredentialsProvider": "com.example.MyProvider"}, "AWSCredentialsProvider"),
        (
            {"AWSCredentialsProviderDynamoDB": "ProfileCredentialsProvider|other"},
            "AWSCredentialsProviderDynamoDB",
        ),
        ({"dynamoDbEndpointUrl": "http://127.0.0.1:1"}, "dynamoDbEndpointUrl"),  # misspelt
        ({"leaseTableName": "other-leases"}, "leaseTableName"),
        ({"dynamoDBEndpoint": ""}, "dynamoDBEndpoint"),
    ],
)
def test_bad_properties_name_the_key(change: dict[str, str], key: str) -> None:
    properties = {**parse_properties(SAMPLE), **change}
    with pytest.raises(ConfigError, match=key):
        to_settings(properties)


def test_endpoints_region_and_profile_are_honoured() -> None:
    """dynamoDBEndpoint (the lease table), kinesisEndpoint (the DynamoDB stream; a bare host
    gets https://) and a named profile become [aws] settings."""
    properties = {
        **parse_properties(SAMPLE),
        "dynamoDBEndpoint": "http://127.0.0.1:8000",
        "kinesisEndpoint": "streams.dynamodb.eu-west-1.amazonaws.com",
        "AWSCredentialsProvider": "ProfileCredentialsProvider|orders-dev",
        "AWSCredentialsProviderDynamoDB": "ProfileCredentialsProvider|orders-dev",
        "regionName": "eu-west-1",
    }
    sections, unused = to_settings(properties)
    settings = load_settings(None, environ={}, defaults=sections)
    assert settings.aws.dynamodb_endpoint_url == "http://127.0.0.1:8000"
    assert settings.aws.streams_endpoint_url == "https://streams.dynamodb.eu-west-1.amazonaws.com"
    assert settings.aws.profile == "orders-dev"
    assert settings.aws.region == "eu-west-1"
    assert "AWSCredentialsProviderDynamoDB" not in unused


def test_a_profile_that_does_not_exist_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A named profile missing from the AWS files stops the start naming aws.profile."""
    (tmp_path / "config").write_text("[profile present]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    with pytest.raises(ConfigError) as caught:
        clients_for(AwsSettings(profile="absent"), pool_size=1)
    assert caught.value.key == "aws.profile"
    assert clients_for(AwsSettings(profile="present"), pool_size=1).region == "us-east-1"


def test_routes_and_multilang_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "dsp.toml"
    path.write_text(
        '[stream]\ntable = "orders"\n[checkpoints]\napplication = "a"\n'
        '[multilang]\nexecutable = "python3 app.py"\n'
        '[[routes]]\nname = "c"\nconsumer = "cache"\n[routes.options]\nredis_url = "memory"\n'
        'keys = ["k:{pk}"]\n'
    )
    with pytest.raises(ConfigError, match="multilang"):
        load_settings(path, environ={})
    path.write_text('[stream]\ntable = "orders"\n[checkpoints]\napplication = "a"\n')
    with pytest.raises(ConfigError, match=r"\[\[routes\]\]"):
        load_settings(path, environ={})


def test_the_checkpoint_rule_of_kcls_checkpointer() -> None:
    rule = CheckpointRange("100")
    for sequence in ("101", "105", "103"):
        rule.delivered(sequence)
    assert rule.resolve(CheckpointRequest("103", None)) == "103"
    assert rule.resolve(CheckpointRequest("100", 0)) == "100"  # the last checkpoint again
    assert rule.resolve(CheckpointRequest(None, None)) == "105"  # largest permitted
    for bad in (CheckpointRequest("99", None), CheckpointRequest("106", None)):
        with pytest.raises(ValueError, match="acceptable range"):
            rule.resolve(bad)
    with pytest.raises(ValueError, match="negative"):
        rule.resolve(CheckpointRequest("103", -1))
    with pytest.raises(ValueError, match="not a sequence number"):
        rule.resolve(CheckpointRequest("LATEST", None))
    with pytest.raises(ValueError, match="SHARD_END"):
        rule.resolve(CheckpointRequest(SHARD_END, None))
    rule.ended = True
    assert rule.resolve(CheckpointRequest(None, None)) == SHARD_END


def test_a_checkpoint_parsed_as_a_number_is_written_as_the_stream_spelled_it() -> None:
    """AWS's sample checkpoints str(int(seq)): DynamoDB Local's zero-padded numbers must go
    back to the lease as delivered, or the next iterator would start elsewhere."""
    rule = CheckpointRange(None)
    for sequence in ("000000000000000000001", "000000000000000000002"):
        rule.delivered(sequence)
    assert rule.resolve(CheckpointRequest("2", None)) == "000000000000000000002"
    rule.checkpointed("000000000000000000002")
    assert rule.resolve(CheckpointRequest("2", None)) == "000000000000000000002"
    with pytest.raises(ValueError, match="acceptable range"):
        rule.resolve(CheckpointRequest("1", None))


def test_child_lines_blank_and_foreign_are_skipped() -> None:
    assert parse_line(b"\n") is None
    assert parse_line(b"Record (Partition Key: 1, ...)\n") is None
    assert parse_line(b"[1, 2]\n") is None
    assert parse_line(b'{"no": "action"}\n') is None
    assert parse_line(b'{"action": "status", "responseFor": "initialize"}\n') == {
        "action": "status",
        "responseFor": "initialize",
    }


def test_the_record_is_what_the_adapter_presented() -> None:
    """The adapter's own test record (RecordAdapterTest.TEST_RECORD_v1_0): nulls omitted,
    field names as DynamoDB's."""
    raw = {
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"hashKey": {"S": "hashKeyValue"}},
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "SequenceNumber": "100000000003498069978",
            "SizeBytes": 6,
            "ApproximateCreationDateTime": 1_700_000_000.5,
            "NewImage": None,
        },
        "eventID": "33fe21d365c03362c5e66d8dec2b63d5",
        "eventVersion": "1.0",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
    }
    document = adapter_document(raw)
    assert document == {
        "eventID": "33fe21d365c03362c5e66d8dec2b63d5",
        "eventName": "INSERT",
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_700_000_000_500,
            "Keys": {"hashKey": {"S": "hashKeyValue"}},
            "SequenceNumber": "100000000003498069978",
            "SizeBytes": 6,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    record = kcl_record(StreamRecord.from_wire(raw, shard_id="s"))
    assert json.loads(base64.b64decode(record["data"])) == document
    assert record["approximateArrivalTimestamp"] == 1_700_000_000_500
    assert record["sequenceNumber"] == record["partitionKey"] == "100000000003498069978"
    assert record["action"] == "record"
