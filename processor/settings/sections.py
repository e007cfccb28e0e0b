"""The configuration's sections: [aws], [stream], [checkpoints], [dead_letter], [batch], [http],
[logging], [observability], [tenancy], [shutdown], [multilang]; each key validated with its fix."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from processor.webhooks.egress import check_http_url

__all__ = [
    "ENV_PREFIX",
    "AwsSettings",
    "BatchSettings",
    "CheckpointSettings",
    "DeadLetterSettings",
    "HttpSettings",
    "LoggingSettings",
    "MultiLangSettings",
    "NamedStreamSettings",
    "ObservabilitySettings",
    "ShutdownSettings",
    "StreamSettings",
    "TableName",
    "TenancySettings",
]


ENV_PREFIX = "DSP_"


#: DynamoDB's rule for table names (moto accepts more; DynamoDB and DynamoDB Local do not)
TableName = Annotated[str, Field(min_length=3, max_length=255, pattern=r"^[a-zA-Z0-9_.\-]+$")]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsSettings(Section):
    region: str = "us-east-1"
    endpoint_url: str | None = None
    dynamodb_endpoint_url: str | None = None  # default: endpoint_url (tables, leases)
    streams_endpoint_url: str | None = None  # default: endpoint_url
    kinesis_endpoint_url: str | None = None  # default: endpoint_url
    #: a named profile of ~/.aws/config and credentials (default: boto3's credential chain)
    profile: str | None = None
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    #: GetRecords and lease renewals sent without botocore's request pipeline when they
    #: succeed (ADR 0030); false: every call through botocore
    fast_path: bool = True

    @field_validator(
        "endpoint_url", "dynamodb_endpoint_url", "streams_endpoint_url", "kinesis_endpoint_url"
    )
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_http_url(value)
        except ValueError as exc:
            raise ValueError(f"{exc}, e.g. http://127.0.0.1:5000") from None


class StreamSettings(Section):
    #: where the table's changes come from: its DynamoDB stream, or its Kinesis Data Streams
    #: destination (``kinesis_stream``, a name or ARN)
    source: Literal["dynamodb", "kinesis"] = "dynamodb"
    table: TableName | None = None
    arn: str | None = None
    kinesis_stream: str | None = Field(default=None, min_length=1)
    #: hold each record this long to restore each key's creation order and drop exact
    #: duplicates (Kinesis Data Streams may deliver late or twice); 0: off
    reorder_window_ms: int = Field(default=0, ge=0, le=60_000)
    starting_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = "TRIM_HORIZON"
    #: with AT_TIMESTAMP: RFC 3339 (2026-12-01T00:00:00Z) or epoch seconds; native on Kinesis,
    #: emulated on DynamoDB Streams (TRIM_HORIZON, records created before it skipped)
    starting_timestamp: float | str | None = None
    get_records_limit: int = Field(default=1000, ge=1, le=1000)
    poll_interval_min_s: float = Field(default=0.25, gt=0, le=60)
    poll_interval_max_s: float = Field(default=2.0, gt=0, le=300)
    #: a shard without records for idle_after_s is polled this often (ADR 0030); set it to
    #: poll_interval_max_s to poll quiet shards as often as others
    idle_poll_interval_s: float = Field(default=10.0, gt=0, le=300)
    idle_after_s: float = Field(default=60.0, gt=0, le=86_400)
    discovery_interval_s: float = Field(default=30.0, ge=1)
    describe_rate_per_s: float = Field(default=5.0, gt=0, le=10)  # DescribeStream limit: 10/s
    on_trimmed: Literal["fail", "skip"] = "fail"
    #: a reader that fails (AccessDenied, say) restarts after full-jitter exponential backoff
    reader_restart_base_s: float = Field(default=1.0, gt=0, le=60)
    reader_restart_max_s: float = Field(default=60.0, gt=0, le=3600)
    #: the most threads reading shards at once (GetRecords and the consumers' work), however
    #: many shards this process owns; waiting readers hold no thread
    reader_threads: int = Field(default=32, ge=1, le=1000)
    #: how coarse the source's ApproximateCreationDateTime is: 1 (AWS rounds down to the
    #: second), 60 for DynamoDB Local (to the minute); replays from a time allow for it
    timestamp_granularity_s: float = Field(default=1.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _one_source(self) -> StreamSettings:
        if self.source == "kinesis":
            if not self.kinesis_stream:
                raise ValueError(
                    "stream.source = kinesis needs stream.kinesis_stream: the name or ARN of the "
                    "Kinesis data stream the table streams to"
                )
            if self.arn:
                raise ValueError(
                    "stream.arn is a DynamoDB stream's ARN; with source = kinesis set "
                    "stream.kinesis_stream instead"
                )
            if self.poll_interval_min_s < 0.2:
                raise ValueError(
                    "poll_interval_min_s must be at least 0.2 with source = kinesis (Kinesis "
                    "allows 5 GetRecords calls per second per shard)"
                )
        elif not self.table and not self.arn:
            raise ValueError("set stream.table (the table whose stream to read) or stream.arn")
        if self.poll_interval_max_s < self.poll_interval_min_s:
            raise ValueError("poll_interval_max_s must be >= poll_interval_min_s")
        if self.starting_position == "AT_TIMESTAMP" and self.starting_timestamp is None:
            raise ValueError(
                'starting_position = "AT_TIMESTAMP" needs starting_timestamp (RFC 3339, e.g. '
                '"2026-12-01T00:00:00Z", or epoch seconds)'
            )
        if self.starting_timestamp is not None:
            if self.starting_position != "AT_TIMESTAMP":
                raise ValueError(
                    'starting_timestamp is read only with starting_position = "AT_TIMESTAMP"'
                )
            parse_timestamp(str(self.starting_timestamp))
        if (
            "idle_poll_interval_s" in self.model_fields_set
            and self.idle_poll_interval_s < self.poll_interval_max_s
        ):
            raise ValueError(
                "idle_poll_interval_s must be >= poll_interval_max_s (it slows idle shards "
                "down further; equal: quiet shards are polled as often as others)"
            )
        if self.reader_restart_max_s < self.reader_restart_base_s:
            raise ValueError("reader_restart_max_s must be >= reader_restart_base_s")
        return self


#: the name `[stream]` has among several streams (its leases keep the bare application's
#: namespace, so a `[[streams]]` entry named so keeps a former `[stream]`'s checkpoints)
DEFAULT_STREAM = "default"


class NamedStreamSettings(StreamSettings):
    """A ``[[streams]]`` entry: a name, then the keys of ``[stream]``."""

    #: names the stream in routes' ``streams``, metrics' ``stream`` label, logs, `dsp status`
    #: and its leases' namespace (``<application>/<name>``; ``default``: ``<application>``)
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")


def parse_timestamp(text: str) -> float:
    """RFC 3339 (a zone is required: ``Z`` or an offset) or epoch seconds, as epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"starting_timestamp {text!r} is neither RFC 3339 (2026-12-01T00:00:00Z) nor "
            "epoch seconds"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"starting_timestamp {text!r} needs a zone: Z or an offset like +01:00")
    return when.timestamp()


class CheckpointSettings(Section):
    table: TableName = "dsp-leases"
    application: str = Field(min_length=1, pattern=r"^[\w.\-:]+$")
    owner: str | None = None  # default: hostname:pid
    lease_timeout_s: float = Field(default=30.0, ge=2)
    renew_interval_s: float = Field(default=10.0, gt=0)
    #: how often the lease table is scanned for free, expired or handed-off leases
    lease_scan_interval_s: float = Field(default=2.0, gt=0)
    #: at most this many leases per process; none (the default): every shard it can take.
    #: The reader pool bounds the threads, so a cap only spreads shards over replicas.
    max_leases: int | None = Field(default=None, ge=1)
    #: delete leases lineage no longer needs (finished shards whose children started, shards
    #: gone from the stream) with the KCL's rules (ADR 0024); false keeps every lease forever
    cleanup: bool = True
    #: how often a cleanup pass runs (a DescribeStream, then at most 100 conditional deletes)
    cleanup_interval_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _renew_faster_than_timeout(self) -> CheckpointSettings:
        if self.renew_interval_s * 2 > self.lease_timeout_s:
            raise ValueError("renew_interval_s must be at most half of lease_timeout_s")
        return self

    @property
    def owner_id(self) -> str:
        return self.owner or f"{socket.gethostname()}:{os.getpid()}"


class DeadLetterSettings(Section):
    path: str | None = "dead-letter.jsonl"
    sqs_queue_url: str | None = None
    #: SQS's limit for one message and for one SendMessageBatch request (1 MiB); a letter
    #: larger than this goes whole to the file at ``path`` and the queue gets its location
    sqs_max_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024)
    #: Lambda only: accept a dead-letter file under /tmp without a queue, although /tmp is
    #: lost when the execution environment is recycled (use sqs_queue_url instead)
    lambda_tmp: bool = False


def _in_range(value: int, low: int, high: int, *, extra: str = "") -> int:
    if not low <= value <= high:
        raise ValueError(f"must be {extra}between {low} and {high}")
    return value


class BatchSettings(Section):
    """Lambda event source mapping controls, with Lambda's names' meaning and ranges."""

    max_records: int = 100  # BatchSize
    max_window_ms: int = 0  # MaximumBatchingWindowInSeconds (in ms)
    max_retries: int = 3  # MaximumRetryAttempts; -1: until the record is too old
    max_record_age_s: int = -1  # MaximumRecordAgeInSeconds; -1: no limit
    bisect_on_error: bool = True  # BisectBatchOnFunctionError
    parallelism: int = 1  # ParallelizationFactor (concurrent key groups per batch)
    retry_base_delay_s: float = Field(default=0.2, gt=0)
    retry_max_delay_s: float = Field(default=20.0, gt=0)

    @field_validator("max_records")
    @classmethod
    def _records(cls, value: int) -> int:
        return _in_range(value, 1, 10000)

    @field_validator("max_window_ms")
    @classmethod
    def _window(cls, value: int) -> int:
        return _in_range(value, 0, 300000)

    @field_validator("max_retries")
    @classmethod
    def _retries(cls, value: int) -> int:
        return value if value == -1 else _in_range(value, 0, 10000, extra="-1 or ")

    @field_validator("max_record_age_s")
    @classmethod
    def _age(cls, value: int) -> int:
        return value if value == -1 else _in_range(value, 60, 604800, extra="-1 or ")

    @field_validator("parallelism")
    @classmethod
    def _parallelism(cls, value: int) -> int:
        return _in_range(value, 1, 10)


class HttpSettings(Section):
    pool_size: int = Field(default=10, ge=1, le=1000)
    ca_bundle: str | None = None  # PEM file of CAs to trust (default: the system's)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    read_timeout_s: float = Field(default=10.0, gt=0)
    #: networks that tenant-supplied webhook URLs may reach although not public, e.g.
    #: ["10.1.0.0/16"]; each admits exactly its own addresses (no IPv4-mapped forms)
    allowed_networks: list[str] = Field(default_factory=list)
    #: check operator-written URLs (the TOML file) against the destination policy too
    guard_operator_urls: bool = False
    #: refuse plain-http tenant URLs
    tenant_https_only: bool = False

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text)
            except ValueError as exc:
                raise ValueError(
                    f'{text!r} is not a network such as "10.1.0.0/16" or "fd00:1::/64" ({exc})'
                ) from None
        return value


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class ObservabilitySettings(Section):
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # off unless set
    host: str = "0.0.0.0"  # noqa: S104 - probes and scrapers reach the pod from outside
    ready_max_stall_s: float = Field(default=60.0, gt=0)
    #: tenants with a label of their own in dsp_tenant_records_total (the rest: "other")
    max_tenant_labels: int = Field(default=100, ge=0, le=10_000)
    #: CloudWatch metrics without an agent: "emf" writes Embedded Metric Format lines to
    #: stdout, which ECS's awslogs driver and Lambda turn into metrics
    cloudwatch: Literal["off", "emf"] = "off"
    cloudwatch_namespace: str = Field(default="dsp", min_length=1, max_length=255)
    cloudwatch_interval_s: float = Field(default=60.0, ge=1, le=3600)


class TenancySettings(Section):
    attribute: str = "pk"
    pattern: str = r"^TENANT#(?P<tenant>[^#]+)"
    #: records whose key does not match: deliver them (tenant None), drop them, or dead-letter
    missing: Literal["process", "skip", "dead_letter"] = "process"

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if "tenant" not in compiled.groupindex:
            raise ValueError("must have a named group (?P<tenant>...)")
        return value


class ShutdownSettings(Section):
    deadline_s: float = Field(default=30.0, gt=0)


class MultiLangSettings(Section):
    """KCL MultiLang mode (`dsp multilang`): each owned shard drives one child process that
    runs an unchanged amazon_kclpy record processor, instead of the routes."""

    #: the child's command line, split on spaces (no shell), as KCL's ``executableName``
    executable: str = Field(min_length=1)
    #: ``shutdownGraceMillis``: how long a child may take to answer ``shutdownRequested``
    #: (and checkpoint) on SIGTERM or a hand-off; KCL's default 0 skips the request
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    #: ``timeoutInSeconds``: a child that does not answer a message in time is killed and
    #: restarted (KCL halts the whole JVM); none: wait as long as it takes
    timeout_s: float | None = Field(default=None, gt=0)
    #: ``callProcessRecordsEvenForEmptyRecordList``
    call_process_records_even_for_empty: bool = False
    #: the child's working directory (default: dsp's)
    cwd: str | None = None
    #: a KCL lease table to import checkpoints from at start (the cut-over from the Java
    #: daemon; leases dsp already has are kept): `dsp leases import-kcl` does it on its own
    import_kcl_lease_table: str | None = None
