"""DynamoDB Streams behind the :class:`~processor.sources.base.StreamSource` seam.

GetRecords bodies are decoded here by us (a ``before-parse`` hook): boto3 keeps signing,
credentials, endpoint resolution, retries and error parsing, while successful pages skip
botocore's response parser and arrive as raw DynamoDB JSON (``wire.decode_page``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import AwsClients, describe_or_missing, translate_client_error
from processor.core.consumer import StreamInfo
from processor.core.records import StreamRecord
from processor.errors import ConfigError, RecordError
from processor.fast_path import FastPath
from processor.sources.base import Page, StreamDescription
from processor.sources.dynamodb.wire import decode_page
from processor.sources.lineage import Shard

__all__ = ["RETENTION_S", "DescribePacer", "StreamsAdapter", "resolve_stream"]

#: DynamoDB Streams keeps a record for 24 hours
RETENTION_S = 24 * 3600.0


def capture_get_records_body(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """before-parse hook: take successful GetRecords bodies out of botocore's parser."""
    if response_dict.get("status_code") != 200:
        return  # errors go through botocore's parser, retries and modeled exceptions
    if "DspBody" in customized_response_dict:
        return  # taken already (the body left is the "{}" put in its place)
    customized_response_dict["DspBody"] = response_dict.get("body") or b"{}"
    response_dict["body"] = b"{}"


class DescribePacer:
    """DescribeStream allows 10 calls a second per account, not per stream: one pacer spaces
    out the calls of every stream a process reads (``[[streams]]``; ADR 0026)."""

    def __init__(
        self,
        rate_per_s: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = 1.0 / rate_per_s
        self._next = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep
        self._monotonic = monotonic

    def wait(self) -> None:
        """Return when the next DescribeStream may be sent."""
        with self._lock:
            now = self._monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self._interval
        if wait > 0:
            self._sleep(wait)


class StreamsAdapter:
    """The DynamoDB Streams calls the reader and worker make, with errors translated."""

    retention_s = RETENTION_S

    def __init__(
        self,
        client: Any,
        *,
        describe_limit: int = 100,
        describe_rate_per_s: float = 5.0,
        pacer: DescribePacer | None = None,
        fast: FastPath | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``pacer``: shared with the process's other DynamoDB streams (else its own, at
        ``describe_rate_per_s``); ``fast``: GetRecords' fast path (ADR 0030), if any."""
        self._client = client
        self._fast = fast
        self._describe_limit = describe_limit
        self._pacer = pacer or DescribePacer(describe_rate_per_s, sleep=sleep, monotonic=monotonic)
        # once per client, however many adapters share it (one per stream of a process)
        client.meta.events.register(
            "before-parse.dynamodb-streams.GetRecords",
            capture_get_records_body,
            unique_id="dsp-capture-get-records-body",
        )

    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, operation, shard_id=kwargs.get("ShardId")) from exc

    def _pace_describe(self) -> None:
        self._pacer.wait()

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
        if self._fast is not None:
            body = self._fast.call("GetRecords", {"ShardIterator": iterator, "Limit": limit})
            if body is not None:
                records, next_iterator, malformed = decode_page(body, shard_id)
                return Page(records, next_iterator, tuple(malformed))
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
    desc = describe_or_missing(
        lambda: clients.dynamodb.describe_table(TableName=table),
        "DescribeTable",
        key="stream.table",
        value=table,
        clients=clients,
        what="no such table",
    )["Table"]
    spec = desc.get("StreamSpecification") or {}
    stream_arn = desc.get("LatestStreamArn")
    if not spec.get("StreamEnabled") or not stream_arn:
        raise ConfigError(
            "stream.table",
            table,
            "the table has no stream enabled; enable one (NEW_AND_OLD_IMAGES suits every consumer)",
        )
    return str(stream_arn)
