"""AWS Lambda entry point: ``processor.aws_lambda.handler`` for a DynamoDB Streams event
source mapping.

The same routes and consumers as ``dsp run``, configured from the TOML file at ``DSP_CONFIG``
(optional) and ``DSP_`` environment variables. Pair it with the event source mapping setting
``FunctionResponseTypes: ["ReportBatchItemFailures"]``.

Within one invocation every route gets one attempt (the mapping's ``MaximumRetryAttempts``
and ``BisectBatchOnFunctionError`` do the retrying). The answer follows Lambda's partial
batch response: for every item key, the first record that failed and every later record of
that key are reported in ``batchItemFailures``; other keys' records go on being delivered.
What we add: records a consumer rejects for good (``RecordError``, a 4xx), records older than
``batch.max_record_age_s`` and malformed records are written **whole** to our dead-letter
destination and not reported, so they are neither retried in vain nor reduced to the
metadata-only record of the mapping's on-failure destination.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from dataclasses import dataclass, replace
from typing import Any

import structlog

from processor._runtime import tune_gc
from processor.app.routes import build_routes, make_dead_letter_sink, retry_policy, tenancy_for
from processor.aws import AwsClients, clients_for
from processor.core.consumer import RouteStats, StreamInfo
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.errors import RecordError
from processor.http import make_http_pool
from processor.ops.logs import configure_logging
from processor.settings import Settings, load_settings
from processor.sources.kinesis.wire import from_kinesis

__all__ = ["handler", "reset"]

log = structlog.get_logger()

#: Lambda needs no lease table; these fill what the worker would require.
LAMBDA_DEFAULTS = {"checkpoints": {"application": "lambda"}, "stream": {"arn": "lambda"}}


@dataclass(slots=True)
class _Runtime:
    settings: Settings
    dispatcher: Dispatcher
    stats: dict[str, RouteStats]
    clients: AwsClients


class _Cache:
    """One runtime per container, built on the first event (Lambda reuses the process)."""

    lock = threading.Lock()
    runtime: _Runtime | None = None


def _record(raw: Any) -> StreamRecord:
    """A DynamoDB stream record, or a Kinesis event record carrying a table's KDS change
    (its sequence number, the Kinesis one, is what batchItemFailures name)."""
    if isinstance(raw, dict) and raw.get("eventSource") == "aws:kinesis":
        kinesis = raw.get("kinesis") or {}
        sequence = str(kinesis.get("sequenceNumber", ""))
        try:
            data = base64.b64decode(kinesis.get("data", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RecordError(f"Kinesis record {sequence}: data is not base64: {exc}") from None
        shard = str(raw.get("eventID", "")).split(":", 1)[0] or None
        return from_kinesis(data, sequence, shard_id=shard)
    return StreamRecord.from_wire(raw)


def _stream_info(first: dict[str, Any]) -> StreamInfo:
    if first.get("eventSource") == "aws:kinesis":  # a table's KDS stream: the change says
        try:
            record = _record(first)
        except RecordError:
            return StreamInfo(str(first.get("eventSourceARN", "")), "", "NEW_AND_OLD_IMAGES", ())
        keys = tuple(record.raw["dynamodb"].get("Keys", {}))
        return StreamInfo(
            str(first.get("eventSourceARN", "")),
            record.table_name or "",
            "NEW_AND_OLD_IMAGES",
            keys,
        )
    arn = str(first.get("eventSourceARN", ""))
    table = arn.split(":table/", 1)[1].split("/", 1)[0] if ":table/" in arn else ""
    ddb = first.get("dynamodb", {})
    return StreamInfo(
        stream_arn=arn,
        table_name=table,
        view_type=str(ddb.get("StreamViewType", "NEW_AND_OLD_IMAGES")),
        key_attributes=tuple(ddb.get("Keys", {})),
    )


def _build(first: dict[str, Any], clients: AwsClients | None = None) -> _Runtime:
    settings = load_settings(os.environ.get("DSP_CONFIG"), defaults=LAMBDA_DEFAULTS)
    tune_gc()
    configure_logging(settings.logging.level, "json")
    clients = clients or clients_for(
        settings.aws,
        region=os.environ.get("AWS_REGION", settings.aws.region),
        pool_size=10 + settings.batch.parallelism,
    )
    stop = threading.Event()
    routes, stats = build_routes(
        settings,
        stream=_stream_info(first),
        clients=clients,
        http=make_http_pool(settings),
        memory_caches={},
        stop=stop,
    )
    # One attempt per invocation: the event source mapping owns retries and bisection.
    policy = replace(
        retry_policy(settings, report_exhausted=True), max_retries=0, bisect_on_error=False
    )
    sink = make_dead_letter_sink(settings, clients)
    dispatcher = Dispatcher(
        routes, sink, policy, stats=stats, stop=stop, tenancy=tenancy_for(settings)
    )
    return _Runtime(settings, dispatcher, stats, clients)


def reset() -> None:
    """Forget the cached configuration (tests; a new container does this by itself)."""
    with _Cache.lock:
        if _Cache.runtime is not None:
            _Cache.runtime.dispatcher.close()
        _Cache.runtime = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Process one event source mapping batch; answer Lambda's partial batch response."""
    raw_records = event.get("Records") or []
    if not raw_records:
        return {"batchItemFailures": []}
    with _Cache.lock:
        if _Cache.runtime is None:
            _Cache.runtime = _build(raw_records[0])
        runtime = _Cache.runtime
    records: list[StreamRecord] = []
    malformed: list[tuple[object, Exception]] = []
    for raw in raw_records:
        try:
            records.append(_record(raw))
        except RecordError as exc:
            malformed.append((raw, exc))
    runtime.dispatcher.reject_malformed(malformed, None)
    unhandled = runtime.dispatcher.dispatch(records)
    log.info("lambda_batch_handled", records=len(raw_records), failures=len(unhandled))
    return {"batchItemFailures": [{"itemIdentifier": r.sequence_number} for r in unhandled]}
