"""The streams a configuration reads, resolved as `dsp run` resolves them: each one's adapter,
ARN and what it carries (table, view type, key schema), and its worker's settings."""

from __future__ import annotations

from processor.aws import AwsClients
from processor.core.consumer import StreamInfo
from processor.dynamodb_table import DynamoDBTable
from processor.errors import ConfigError
from processor.runtime.reader import ReaderSettings
from processor.runtime.worker import WorkerSettings
from processor.settings import Settings, StreamSettings
from processor.settings.sections import parse_timestamp
from processor.sources.base import StreamSource
from processor.sources.dynamodb import DescribePacer, StreamsAdapter, resolve_stream
from processor.sources.kinesis.adapter import READS_PER_SECOND as KINESIS_READS_PER_SECOND
from processor.sources.kinesis.adapter import KinesisSource, resolve_kinesis_stream

__all__ = ["describe_pacer", "reader_threads", "resolve", "stream_settings", "worker_settings"]


def stream_settings(settings: Settings, name: str | None) -> StreamSettings:
    """The stream called ``name`` (None: the only one; ConfigError when there are several)."""
    if name is None:
        return settings.only_stream
    for found, stream in settings.named_streams:
        if found == name:
            return stream
    known = ", ".join(n for n, _ in settings.named_streams)
    raise ConfigError("--stream", name, f"no such stream; streams: {known}")


def describe_pacer(settings: Settings) -> DescribePacer:
    """One DescribeStream pacer for every DynamoDB stream of the process (AWS's limit is per
    account): at the lowest ``describe_rate_per_s`` among them."""
    rates = [s.describe_rate_per_s for _, s in settings.named_streams if s.source == "dynamodb"]
    return DescribePacer(min(rates) if rates else 5.0)


def resolve(
    stream: StreamSettings, clients: AwsClients, pacer: DescribePacer | None = None
) -> tuple[StreamSource, str, StreamInfo]:
    """The stream to read (the table's latest, or the configured ARN), its adapter and what it
    carries (table, view type, key schema). ``pacer``: shared by the process's DynamoDB
    streams (:func:`describe_pacer`)."""
    if stream.source == "kinesis":
        return _kinesis(stream, clients)
    stream_arn = resolve_stream(clients, table=stream.table, arn=stream.arn)
    adapter = StreamsAdapter(
        clients.streams,
        describe_rate_per_s=stream.describe_rate_per_s,
        pacer=pacer,
        fast=clients.fast("dynamodbstreams"),
    )
    return adapter, stream_arn, adapter.describe(stream_arn).info


def _kinesis(stream: StreamSettings, clients: AwsClients) -> tuple[StreamSource, str, StreamInfo]:
    """A table's Kinesis Data Streams destination. KDS records carry both images; the key
    schema comes from the table (``stream.table``) when it is named."""
    assert stream.kinesis_stream is not None  # the settings say so
    arn = resolve_kinesis_stream(clients, stream.kinesis_stream)
    keys: tuple[str, ...] = ()
    if stream.table:
        found = DynamoDBTable(clients.dynamodb, stream.table).key_attributes()
        if found is None:
            where = clients.endpoint_url or f"region {clients.region}"
            raise ConfigError(
                "stream.table", stream.table, f"no such table at {where}; check the name"
            )
        keys = found
    info = StreamInfo(arn, stream.table or "", "NEW_AND_OLD_IMAGES", keys)
    source = KinesisSource(clients.kinesis, info=info)
    return source, arn, source.describe(arn).info


def worker_settings(settings: Settings, stream: StreamSettings | None = None) -> WorkerSettings:
    """A stream's worker and readers' knobs, from its [stream] (default: the only one) and
    [checkpoints], [batch], [shutdown]."""
    stream = stream or settings.only_stream
    return WorkerSettings(
        owner=settings.checkpoints.owner_id,
        starting_position=stream.starting_position,
        starting_timestamp=(
            parse_timestamp(str(stream.starting_timestamp))
            if stream.starting_timestamp is not None
            else None
        ),
        native_at_timestamp=stream.source == "kinesis",
        timestamp_granularity_s=stream.timestamp_granularity_s,
        lease_timeout_s=settings.checkpoints.lease_timeout_s,
        renew_interval_s=settings.checkpoints.renew_interval_s,
        lease_scan_interval_s=settings.checkpoints.lease_scan_interval_s,
        discovery_interval_s=stream.discovery_interval_s,
        max_leases=settings.checkpoints.max_leases,
        cleanup_interval_s=(
            settings.checkpoints.cleanup_interval_s if settings.checkpoints.cleanup else None
        ),
        shutdown_deadline_s=settings.shutdown.deadline_s,
        reader_restart_base_s=stream.reader_restart_base_s,
        reader_restart_max_s=stream.reader_restart_max_s,
        reader_threads=reader_threads(settings),
        reader=ReaderSettings(
            get_records_limit=stream.get_records_limit,
            max_records=settings.batch.max_records,
            max_window_s=settings.batch.max_window_ms / 1000,
            on_trimmed=stream.on_trimmed,
            poll_interval_min_s=stream.poll_interval_min_s,
            poll_interval_max_s=stream.poll_interval_max_s,
            # the default 10 s never makes quiet shards poll faster than poll_interval_max_s
            idle_poll_interval_s=max(stream.idle_poll_interval_s, stream.poll_interval_max_s),
            idle_after_s=stream.idle_after_s,
            reorder_window_s=stream.reorder_window_ms / 1000,
            min_read_interval_s=(
                1 / KINESIS_READS_PER_SECOND if stream.source == "kinesis" else 0.0
            ),
        ),
    )


def reader_threads(settings: Settings) -> int:
    """The one reader pool's bound: the largest ``reader_threads`` of the streams (ADR 0026)."""
    return max(stream.reader_threads for _, stream in settings.named_streams)
