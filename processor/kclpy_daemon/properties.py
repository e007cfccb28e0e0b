"""KCL MultiLang ``.properties`` files, read as our settings.

Every key is honoured, warned about, or refused, never silently dropped:

* **honoured**: the keys in :data:`MAPPED`. Among them are where data is read and written
  (``dynamoDBEndpoint`` for the lease table, ``kinesisEndpoint`` for the DynamoDB stream,
  ``regionName``) and as whom (``AWSCredentialsProvider``: ``DefaultCredentialsProvider`` /
  ``DefaultAWSCredentialsProviderChain``, or ``ProfileCredentialsProvider|<name>``). These take
  precedence over boto3's ``AWS_ENDPOINT_URL`` variables, because the file names them.
* **refused** (exit 2, naming the key): a credentials provider dsp cannot honour, a DynamoDB
  credentials provider different from the main one, an ``AT_TIMESTAMP`` starting position,
  and any unknown key that names an endpoint, region, credentials, stream or table. Running
  against something other than what the file says is worse than not starting.
* **warned about**: the Java daemon's own tuning and metrics (:data:`IGNORED`), and any other
  unknown key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from processor.errors import ConfigError

__all__ = ["IGNORED", "MAPPED", "parse_properties", "to_settings"]

#: unknown keys whose name says they choose where or as whom: refused rather than ignored
_LOCATION_WORDS = re.compile(r"endpoint|region|credential|profile|role|stream|table", re.I)
#: the credentials providers that mean boto3's default chain
_DEFAULT_PROVIDERS = frozenset({"DefaultCredentialsProvider", "DefaultAWSCredentialsProviderChain"})
_PROFILE_PROVIDER = "ProfileCredentialsProvider"

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
    "cleanupLeasesUponShardCompletion": "checkpoints.cleanup (the same rules, ADR 0024)",
    "shutdownGraceMillis": "multilang.shutdown_grace_s",
    "timeoutInSeconds": "multilang.timeout_s",
    "workerId": "checkpoints.owner",
    "dynamoDBEndpoint": "aws.dynamodb_endpoint_url (the lease table)",
    "kinesisEndpoint": "aws.streams_endpoint_url (the DynamoDB stream)",
    "AWSCredentialsProvider": "boto3's default chain, or aws.profile",
    "AwsCredentialsProvider": "boto3's default chain, or aws.profile",
    "AWSCredentialsProviderDynamoDB": "the same credentials as AWSCredentialsProvider",
    "dspImportKclLeaseTable": "multilang.import_kcl_lease_table (dsp's own key)",
}

#: properties that mean something to the Java daemon only (JVM threads, KCL metrics, ...)
IGNORED = frozenset(
    {
        "processingLanguage",
        "maxActiveThreads",
        "AWSCredentialsProviderCloudWatch",  # KCL metrics: dsp publishes none to CloudWatch
        "metricsLevel",
        "metricsEnabledDimensions",
        "retrievalMode",
        "shardSyncIntervalMillis",
        "validateSequenceNumberBeforeCheckpointing",
        "taskBackoffTimeMillis",
        "parentShardPollIntervalMillis",
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


def _endpoint(properties: Mapping[str, str], key: str) -> str:
    """A KCL endpoint: a URL, or a bare host name as the Java SDK accepts (HTTPS)."""
    value = properties[key].strip()
    if not value:
        raise ConfigError(
            key, value, "an endpoint URL, e.g. https://dynamodb.eu-west-1.amazonaws.com"
        )
    return value if "://" in value else f"https://{value}"


def _profile(properties: Mapping[str, str], key: str) -> str | None:
    """The profile a credentials provider names; None for boto3's default chain."""
    provider, _, argument = properties[key].strip().partition("|")
    if provider in _DEFAULT_PROVIDERS and not argument:
        return None
    if provider == _PROFILE_PROVIDER:
        return argument.strip() or "default"
    raise ConfigError(
        key,
        properties[key],
        "dsp cannot use this credentials provider, and would run as someone else; use "
        "DefaultCredentialsProvider (the environment, a role, SSO) or "
        "ProfileCredentialsProvider|<profile name>",
    )


def _credentials(properties: Mapping[str, str], aws: dict[str, Any]) -> None:
    keys = [k for k in ("AWSCredentialsProvider", "AwsCredentialsProvider") if k in properties]
    main = _profile(properties, keys[0]) if keys else None
    if "AWSCredentialsProviderDynamoDB" in properties:
        lease = _profile(properties, "AWSCredentialsProviderDynamoDB")
        if lease != main:
            raise ConfigError(
                "AWSCredentialsProviderDynamoDB",
                properties["AWSCredentialsProviderDynamoDB"],
                "dsp uses one set of credentials for the stream and the lease table; make it "
                "the same as AWSCredentialsProvider",
            )
    if main is not None:
        aws["profile"] = main


def to_settings(properties: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Settings sections from ``properties`` (below the TOML file and ``DSP_`` variables in
    precedence), and the keys that were not used (to warn about). Raises ConfigError for a
    key that would choose where or as whom and that dsp cannot honour."""
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
                "initialPositionInStream",
                position,
                "TRIM_HORIZON or LATEST (DynamoDB Streams has no AT_TIMESTAMP iterator)",
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
    if "cleanupLeasesUponShardCompletion" in properties:
        sections["checkpoints"]["cleanup"] = _flag(properties, "cleanupLeasesUponShardCompletion")
    if "maxLeasesForWorker" in properties:
        sections["checkpoints"]["max_leases"] = int(_number(properties, "maxLeasesForWorker"))
    if "shutdownGraceMillis" in properties:
        grace = _number(properties, "shutdownGraceMillis") / 1000
        sections["multilang"]["shutdown_grace_s"] = grace
    if "timeoutInSeconds" in properties:
        sections["multilang"]["timeout_s"] = _number(properties, "timeoutInSeconds")
    if "workerId" in properties:
        sections["checkpoints"]["owner"] = properties["workerId"]
    if properties.get("dspImportKclLeaseTable"):
        sections["multilang"]["import_kcl_lease_table"] = properties["dspImportKclLeaseTable"]
    _where_and_as_whom(properties, sections["aws"])
    unused = sorted(k for k in properties if k not in MAPPED)
    return {k: v for k, v in sections.items() if v}, unused


def _where_and_as_whom(properties: Mapping[str, str], aws: dict[str, Any]) -> None:
    """Endpoints and credentials: honoured, or refused; never ignored."""
    if "dynamoDBEndpoint" in properties:
        aws["dynamodb_endpoint_url"] = _endpoint(properties, "dynamoDBEndpoint")
    if "kinesisEndpoint" in properties:
        aws["streams_endpoint_url"] = _endpoint(properties, "kinesisEndpoint")
    _credentials(properties, aws)
    for key in properties:
        if key not in MAPPED and key not in IGNORED and _LOCATION_WORDS.search(key):
            raise ConfigError(
                key,
                properties[key],
                "dsp does not know this property, and its name says it chooses where data is "
                "read or written, or as whom; remove it, or set the matching [aws] / [stream] "
                "setting",
            )


def read_properties(path: str | Path) -> dict[str, str]:
    try:
        return parse_properties(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("--properties", str(path), "file not found") from None
