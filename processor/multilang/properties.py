"""KCL MultiLang ``.properties`` files, read as our settings.

The keys a StreamsMultiLangDaemon user already has map onto our sections; keys we do not use
are reported (never fatal), so an existing file works unchanged. Endpoints come from boto3's
standard ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_DYNAMODB`` and
``AWS_ENDPOINT_URL_DYNAMODB_STREAMS`` variables (or ``DSP_AWS__...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from processor.errors import ConfigError

__all__ = ["IGNORED", "MAPPED", "parse_properties", "to_settings"]

#: properties with a counterpart here: what each becomes
MAPPED = {
    "executableName": "multilang.executable",
    "applicationName": "checkpoints.application",
    "streamArn": "stream.arn",
    "streamName": "stream.arn (a DynamoDB stream ARN)",
    "tableName": "stream.table (its latest stream)",
    "regionName": "aws.region",
    "initialPositionInStream": "stream.starting_position",
    "maxRecords": "batch.max_records and stream.get_records_limit",
    "idleTimeBetweenReadsInMillis": "stream.poll_interval_min_s / _max_s",
    "callProcessRecordsEvenForEmptyRecordList": "multilang.call_process_records_even_for_empty",
    "failoverTimeMillis": "checkpoints.lease_timeout_s (renewals at a third of it)",
    "maxLeasesForWorker": "checkpoints.max_leases",
    "shutdownGraceMillis": "multilang.shutdown_grace_s",
    "timeoutInSeconds": "multilang.timeout_s",
    "workerId": "checkpoints.owner",
}

#: properties that mean something to the Java daemon only (JVM threads, KCL metrics, ...)
IGNORED = frozenset(
    {
        "processingLanguage",
        "maxActiveThreads",
        "AWSCredentialsProvider",
        "AwsCredentialsProvider",
        "AWSCredentialsProviderDynamoDB",
        "AWSCredentialsProviderCloudWatch",
        "metricsLevel",
        "metricsEnabledDimensions",
        "retrievalMode",
        "shardSyncIntervalMillis",
        "cleanupLeasesUponShardCompletion",
        "validateSequenceNumberBeforeCheckpointing",
        "taskBackoffTimeMillis",
        "parentShardPollIntervalMillis",
        "kinesisEndpoint",
        "dynamoDBEndpoint",
    }
)


def parse_properties(text: str) -> dict[str, str]:
    """Java ``.properties``: ``key=value``, ``key: value`` or ``key value``; ``#``/``!``
    comments; a trailing backslash continues the line."""
    out: dict[str, str] = {}
    logical = ""
    for raw_line in text.splitlines():
        line = raw_line.strip() if not logical else raw_line.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical += line[:-1]
            continue
        logical += line
        key, value = _split(logical)
        out[key] = value
        logical = ""
    if logical:
        key, value = _split(logical)
        out[key] = value
    return out


def _split(line: str) -> tuple[str, str]:
    for index, char in enumerate(line):
        if char in "=:" or char.isspace():
            key, rest = line[:index], line[index:].lstrip()
            if rest[:1] in ("=", ":"):
                rest = rest[1:].lstrip()
            return key, rest
    return line, ""


def _number(properties: Mapping[str, str], key: str) -> float:
    try:
        return float(properties[key])
    except ValueError:
        raise ConfigError(key, properties[key], "expected a number") from None


def _flag(properties: Mapping[str, str], key: str) -> bool:
    value = properties[key].strip().lower()
    if value not in ("true", "false"):
        raise ConfigError(key, properties[key], "expected true or false")
    return value == "true"


def to_settings(properties: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Settings sections from ``properties`` (below the TOML file and ``DSP_`` variables in
    precedence), and the keys that were not used (to report)."""
    for required in ("executableName", "applicationName"):
        if not properties.get(required):
            raise ConfigError(required, None, "required in a MultiLang properties file")
    sections: dict[str, dict[str, Any]] = {
        "multilang": {"executable": properties["executableName"]},
        "checkpoints": {"application": properties["applicationName"]},
        "stream": {},
        "aws": {},
        "batch": {},
        "dead_letter": {"path": f"{properties['applicationName']}-dead-letters.jsonl"},
    }
    stream_arn = properties.get("streamArn") or properties.get("streamName")
    if stream_arn:
        if not stream_arn.startswith("arn:"):
            raise ConfigError(
                "streamName",
                stream_arn,
                "give the DynamoDB stream's ARN (or tableName for the table's latest stream)",
            )
        sections["stream"]["arn"] = stream_arn
    elif properties.get("tableName"):
        sections["stream"]["table"] = properties["tableName"]
    else:
        raise ConfigError("streamArn", None, "give streamArn (or streamName, or tableName)")
    if "regionName" in properties:
        sections["aws"]["region"] = properties["regionName"]
    if "initialPositionInStream" in properties:
        position = properties["initialPositionInStream"].strip().upper()
        if position not in ("TRIM_HORIZON", "LATEST"):
            raise ConfigError(
                "initialPositionInStream", position, "TRIM_HORIZON or LATEST (DynamoDB Streams)"
            )
        sections["stream"]["starting_position"] = position
    if "maxRecords" in properties:
        records = int(_number(properties, "maxRecords"))
        sections["batch"]["max_records"] = records
        sections["stream"]["get_records_limit"] = min(records, 1000)
    if "idleTimeBetweenReadsInMillis" in properties:
        idle = _number(properties, "idleTimeBetweenReadsInMillis") / 1000
        sections["stream"]["poll_interval_min_s"] = idle
        sections["stream"]["poll_interval_max_s"] = idle
    if "callProcessRecordsEvenForEmptyRecordList" in properties:
        sections["multilang"]["call_process_records_even_for_empty"] = _flag(
            properties, "callProcessRecordsEvenForEmptyRecordList"
        )
    if "failoverTimeMillis" in properties:
        timeout = _number(properties, "failoverTimeMillis") / 1000
        sections["checkpoints"]["lease_timeout_s"] = timeout
        sections["checkpoints"]["renew_interval_s"] = timeout / 3
    if "maxLeasesForWorker" in properties:
        sections["checkpoints"]["max_leases"] = int(_number(properties, "maxLeasesForWorker"))
    if "shutdownGraceMillis" in properties:
        grace = _number(properties, "shutdownGraceMillis") / 1000
        sections["multilang"]["shutdown_grace_s"] = grace
    if "timeoutInSeconds" in properties:
        sections["multilang"]["timeout_s"] = _number(properties, "timeoutInSeconds")
    if "workerId" in properties:
        sections["checkpoints"]["owner"] = properties["workerId"]
    unused = sorted(k for k in properties if k not in MAPPED)
    return {k: v for k, v in sections.items() if v}, unused


def read_properties(path: str | Path) -> dict[str, str]:
    try:
        return parse_properties(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("--properties", str(path), "file not found") from None
