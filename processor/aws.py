"""Thin adapters over boto3: client construction, error translation, the streams API.

This is the only module that knows botocore's exceptions. Everything it raises belongs to
``processor.errors``. GetRecords bodies are decoded here by us (``before-parse`` hook): boto3
keeps signing, credentials, endpoint resolution, retries and error parsing, while successful
pages skip botocore's response parser and arrive as raw DynamoDB JSON.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from processor.core.consumer import StreamInfo
from processor.core.records import StreamRecord
from processor.errors import (
    ConfigError,
    IteratorExpiredError,
    ProcessorError,
    RecordError,
    StreamNotFoundError,
    TransientError,
    TrimmedDataError,
)
from processor.sources.dynamodb.wire import decode_page
from processor.sources.lineage import Shard

__all__ = [
    "THROTTLING_CODES",
    "AwsClients",
    "Page",
    "StreamsAdapter",
    "make_clients",
    "resolve_stream",
    "translate_client_error",
]

#: Error codes that mean "slow down", from any DynamoDB, Streams or SQS call.
THROTTLING_CODES = frozenset(
    {
        "LimitExceededException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "Throttling",
    }
)
_SERVER_CODES = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure"})
_CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate_client_error(
    exc: ClientError | BotoCoreError,
    operation: str,
    *,
    shard_id: str | None = None,
    consumer: str | None = None,
) -> ProcessorError:
    """Map one botocore exception to the project's error tree (call as ``raise ... from``)."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = (
            f"{operation}: {code or status}: {exc.response.get('Error', {}).get('Message', '')}"
        )
        if code == "ExpiredIteratorException":
            return IteratorExpiredError(message, shard_id=shard_id, consumer=consumer)
        if code == "TrimmedDataAccessException":
            return TrimmedDataError(message, shard_id=shard_id, consumer=consumer)
        if code == "ResourceNotFoundException":
            return StreamNotFoundError(message, shard_id=shard_id, consumer=consumer)
        if code in THROTTLING_CODES or code in _SERVER_CODES or status >= 500 or status == 429:
            return TransientError(message, shard_id=shard_id, consumer=consumer)
        return ProcessorError(message, shard_id=shard_id, consumer=consumer)
    if isinstance(exc, _CONNECTION_ERRORS):
        return TransientError(f"{operation}: {exc}", shard_id=shard_id, consumer=consumer)
    return ProcessorError(f"{operation}: {exc}", shard_id=shard_id, consumer=consumer)


@dataclass(slots=True)
class AwsClients:
    """The boto3 clients the process shares (low-level clients are thread-safe)."""

    dynamodb: Any
    streams: Any
    sqs: Any
    region: str
    endpoint_url: str | None


def make_clients(
    *,
    region: str,
    endpoint_url: str | None,
    streams_endpoint_url: str | None = None,
    retry_mode: str,
    max_attempts: int,
    pool_size: int,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 30.0,
) -> AwsClients:
    """Build clients with standard/adaptive retries and a pool sized for the threads sharing it.

    botocore's default "legacy" mode does not retry ``LimitExceededException`` for the streams
    client; "standard" and "adaptive" do.
    """
    session = boto3.session.Session(region_name=region)
    retries: Any = {"mode": retry_mode, "max_attempts": max_attempts}
    config = Config(
        region_name=region,
        retries=retries,
        max_pool_connections=pool_size,
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        tcp_keepalive=True,
    )
    kwargs: dict[str, Any] = {"config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    streams_kwargs = dict(kwargs)
    if streams_endpoint_url:
        streams_kwargs["endpoint_url"] = streams_endpoint_url
    return AwsClients(
        dynamodb=session.client("dynamodb", **kwargs),
        streams=session.client("dynamodbstreams", **streams_kwargs),
        sqs=session.client("sqs", **kwargs),
        region=region,
        endpoint_url=endpoint_url,
    )


@dataclass(frozen=True, slots=True)
class Page:
    """One GetRecords answer. ``next_iterator`` is None once a closed shard is drained."""

    records: list[StreamRecord]
    next_iterator: str | None
    malformed: tuple[tuple[Any, Exception], ...] = ()


@dataclass(frozen=True, slots=True)
class StreamDescription:
    info: StreamInfo
    shards: tuple[Shard, ...]
    status: str


def _capture_get_records_body(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """before-parse hook: take successful GetRecords bodies out of botocore's parser."""
    if response_dict.get("status_code") != 200:
        return  # errors go through botocore's parser, retries and modeled exceptions
    customized_response_dict["DspBody"] = response_dict.get("body") or b"{}"
    response_dict["body"] = b"{}"


class StreamsAdapter:
    """The DynamoDB Streams calls the reader and worker make, with errors translated."""

    def __init__(
        self,
        client: Any,
        *,
        describe_limit: int = 100,
        describe_rate_per_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._describe_limit = describe_limit
        self._describe_interval = 1.0 / describe_rate_per_s
        self._next_describe = 0.0
        self._describe_lock = threading.Lock()
        self._sleep = sleep
        self._monotonic = monotonic
        client.meta.events.register(
            "before-parse.dynamodb-streams.GetRecords", _capture_get_records_body
        )

    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, operation, shard_id=kwargs.get("ShardId")) from exc

    def _pace_describe(self) -> None:
        """DescribeStream allows 10 calls/s per account: space our calls out."""
        with self._describe_lock:
            now = self._monotonic()
            wait = self._next_describe - now
            self._next_describe = max(now, self._next_describe) + self._describe_interval
        if wait > 0:
            self._sleep(wait)

    def child_shards(self, stream_arn: str, shard_id: str) -> list[Shard]:
        """The children of a finished shard (``ShardFilter`` CHILD_SHARDS), paginated."""
        return list(self.describe(stream_arn, children_of=shard_id).shards)

    def describe(self, stream_arn: str, *, children_of: str | None = None) -> StreamDescription:
        """Every shard of the stream (or a shard's children), following pagination."""
        shards: list[Shard] = []
        start: str | None = None
        first: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {"StreamArn": stream_arn, "Limit": self._describe_limit}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            if children_of:
                kwargs["ShardFilter"] = {"Type": "CHILD_SHARDS", "ShardId": children_of}
            self._pace_describe()
            desc = self._call("DescribeStream", self._client.describe_stream, **kwargs)[
                "StreamDescription"
            ]
            first = first or desc
            shards.extend(Shard.from_api(s) for s in desc.get("Shards", []))
            start = desc.get("LastEvaluatedShardId")
            if not start:
                break
        assert first is not None
        info = StreamInfo(
            stream_arn=stream_arn,
            table_name=str(first.get("TableName", "")),
            view_type=str(first.get("StreamViewType", "")),
            key_attributes=tuple(k["AttributeName"] for k in first.get("KeySchema", [])),
        )
        return StreamDescription(info=info, shards=tuple(shards), status=first["StreamStatus"])

    def get_iterator(
        self,
        stream_arn: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {
            "StreamArn": stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": iterator_type,
        }
        if sequence_number is not None:
            kwargs["SequenceNumber"] = sequence_number
        answer = self._call("GetShardIterator", self._client.get_shard_iterator, **kwargs)
        return str(answer["ShardIterator"])

    def get_records(self, iterator: str, *, limit: int, shard_id: str) -> Page:
        try:
            answer = self._client.get_records(ShardIterator=iterator, Limit=limit)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "GetRecords", shard_id=shard_id) from exc
        body = answer.get("DspBody")
        if body is not None:
            records, next_iterator, malformed = decode_page(body, shard_id)
            return Page(records, next_iterator, tuple(malformed))
        records = []  # a stubbed client or a hook-less path: botocore parsed the page
        malformed = []
        for raw in answer.get("Records", []):
            try:
                records.append(StreamRecord.from_wire(raw, shard_id=shard_id))
            except RecordError as exc:
                malformed.append((raw, exc))
        return Page(records, answer.get("NextShardIterator"), tuple(malformed))


def resolve_stream(clients: AwsClients, *, table: str | None, arn: str | None) -> str:
    """The stream ARN to read: given directly, or the table's latest stream."""
    if arn:
        return arn
    assert table is not None
    try:
        desc = clients.dynamodb.describe_table(TableName=table)["Table"]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            where = clients.endpoint_url or f"region {clients.region}"
            raise ConfigError(
                "stream.table", table, f"no such table at {where}; check the name and region"
            ) from exc
        raise translate_client_error(exc, "DescribeTable") from exc
    except BotoCoreError as exc:
        raise translate_client_error(exc, "DescribeTable") from exc
    spec = desc.get("StreamSpecification") or {}
    stream_arn = desc.get("LatestStreamArn")
    if not spec.get("StreamEnabled") or not stream_arn:
        raise ConfigError(
            "stream.table",
            table,
            "the table has no stream enabled; enable one (NEW_AND_OLD_IMAGES suits every consumer)",
        )
    return str(stream_arn)
