"""A table's Kinesis Data Streams destination behind the StreamSource seam.

Polling GetRecords, as the KCL's polling mode does (5 reads/s per shard, up to 10,000
records or 10 MB per call). Shards split and merge; a merged shard has two parents
(``AdjacentParentShardId``) and is read only once both are finished. Real Kinesis ends a
closed shard with a null ``NextShardIterator``; moto keeps answering with one, so a closed
shard also ends once an empty page comes after its ``EndingSequenceNumber``.
"""

from __future__ import annotations

import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import describe_or_missing, error_code, translate_client_error
from processor.core.consumer import StreamInfo
from processor.errors import TrimmedDataError
from processor.sources.base import Page, StreamDescription
from processor.sources.dynamodb.adapter import capture_get_records_body
from processor.sources.kinesis.wire import decode_page
from processor.sources.lineage import Shard

__all__ = ["MAX_RECORDS_PER_CALL", "READS_PER_SECOND", "KinesisSource", "resolve_kinesis_stream"]

#: GetRecords returns at most 10,000 records (and 10 MB) per call
MAX_RECORDS_PER_CALL = 10_000
#: GetRecords calls per second per shard that Kinesis allows (each excess call is throttled)
READS_PER_SECOND = 5
_HOUR = 3600.0


class KinesisSource:
    """The Kinesis calls the reader and worker make, with errors translated."""

    def __init__(self, client: Any, *, info: StreamInfo | None = None) -> None:
        self._client = client
        self._info = info
        # successful GetRecords bodies skip botocore's parser, as on DynamoDB Streams
        # once per client, however many sources share it (one per stream of a process)
        client.meta.events.register(
            "before-parse.kinesis.GetRecords",
            capture_get_records_body,
            unique_id="dsp-capture-kinesis-get-records-body",
        )
        self._lock = threading.Lock()
        self._ending: dict[str, int] = {}  # closed shard -> EndingSequenceNumber
        self._last: dict[str, int] = {}  # shard -> last sequence number read or resumed after
        #: the stream's retention (DescribeStreamSummary; 24 h until known, up to 365 days)
        self.retention_s = 24 * _HOUR

    def _call(self, operation: str, method: Any, shard_id: str | None = None, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, operation, shard_id=shard_id) from exc

    def describe(self, stream_arn: str, *, children_of: str | None = None) -> StreamDescription:
        shards: list[Shard] = []
        kwargs: dict[str, Any] = {"StreamARN": stream_arn}
        while True:
            answer = self._call("ListShards", self._client.list_shards, **kwargs)
            shards.extend(Shard.from_api(s) for s in answer.get("Shards", []))
            token = answer.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}  # ListShards refuses the stream name with a token
        summary = self._call(
            "DescribeStreamSummary", self._client.describe_stream_summary, StreamARN=stream_arn
        )["StreamDescriptionSummary"]
        self.retention_s = float(summary.get("RetentionPeriodHours", 24)) * _HOUR
        with self._lock:
            for shard in shards:
                if shard.ending_sequence_number is not None:
                    self._ending[shard.shard_id] = int(shard.ending_sequence_number)
        if children_of is not None:
            shards = [s for s in shards if children_of in s.parent_shard_ids]
        info = self._info or StreamInfo(stream_arn, "", "NEW_AND_OLD_IMAGES", ())
        return StreamDescription(info, tuple(shards), str(summary.get("StreamStatus", "")))

    def child_shards(self, stream_arn: str, shard_id: str) -> list[Shard]:
        return list(self.describe(stream_arn, children_of=shard_id).shards)

    def get_iterator(
        self,
        stream_arn: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
    ) -> str:
        kwargs: dict[str, Any] = {
            # by name: moto's iterators from a StreamARN forget the stream (GetRecords then
            # answers ResourceNotFoundException); Kinesis takes either
            "StreamName": stream_arn.rsplit(":stream/", 1)[-1],
            "ShardId": shard_id,
            "ShardIteratorType": iterator_type,
        }
        if iterator_type == "AT_TIMESTAMP":  # the position is a time: epoch seconds
            kwargs["Timestamp"] = float(sequence_number or 0)
        elif sequence_number is not None:
            kwargs["StartingSequenceNumber"] = sequence_number
            resumed = int(sequence_number) - (iterator_type == "AT_SEQUENCE_NUMBER")
            with self._lock:
                self._last[shard_id] = resumed
        try:
            answer = self._client.get_shard_iterator(**kwargs)
        except ClientError as exc:
            if iterator_type in _SEQUENCE_TYPES and _names_the_start(exc):
                # Kinesis has no TrimmedDataAccessException: a checkpoint older than the
                # stream's retention comes back as InvalidArgumentException on the start
                raise TrimmedDataError(
                    f"GetShardIterator: {error_code(exc)}: {_message(exc)}", shard_id=shard_id
                ) from exc
            raise translate_client_error(exc, "GetShardIterator", shard_id=shard_id) from exc
        except BotoCoreError as exc:
            raise translate_client_error(exc, "GetShardIterator", shard_id=shard_id) from exc
        return str(answer["ShardIterator"])

    def get_records(self, iterator: str, *, limit: int, shard_id: str) -> Page:
        answer = self._call(
            "GetRecords",
            self._client.get_records,
            shard_id,
            ShardIterator=iterator,
            Limit=min(limit, MAX_RECORDS_PER_CALL),
        )
        page = decode_page(answer["DspBody"], shard_id)  # the hook registered above kept it
        next_iterator = page.next_iterator
        with self._lock:
            if page.last_sequence is not None:
                self._last[shard_id] = int(page.last_sequence)
            ending = self._ending.get(shard_id)
            drained = ending is not None and self._last.get(shard_id, 0) >= ending
        if page.last_sequence is None and drained:
            next_iterator = None  # closed and read to its end (moto never says so itself)
        return Page(page.records, next_iterator, tuple(page.malformed), page.millis_behind)


_SEQUENCE_TYPES = ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def _names_the_start(exc: ClientError) -> bool:
    """InvalidArgumentException about StartingSequenceNumber: the position is gone."""
    return error_code(exc) == "InvalidArgumentException" and "startingsequencenumber" in _message(
        exc
    ).lower().replace(" ", "")


def resolve_kinesis_stream(clients: Any, stream: str) -> str:
    """The Kinesis stream's ARN, from its name or ARN; ConfigError naming the key if absent."""
    kwargs = {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}
    answer = describe_or_missing(
        lambda: clients.kinesis.describe_stream_summary(**kwargs),
        "DescribeStreamSummary",
        key="stream.kinesis_stream",
        value=stream,
        clients=clients,
        what="no such Kinesis stream",
    )
    return str(answer["StreamDescriptionSummary"]["StreamARN"])
