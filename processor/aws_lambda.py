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

Never hang, never vanish:

* At the first event, a dead-letter destination that cannot be written is refused
  (``ConfigError``, the invocation fails visibly): a file in the read-only ``/var/task``, or
  under ``/tmp`` (lost when the execution environment is recycled) without
  ``[dead_letter] lambda_tmp = true``. Use ``dead_letter.sqs_queue_url`` in Lambda.
* Each invocation watches ``context.get_remaining_time_in_millis()``: :func:`budget_margin_s`
  before Lambda's timeout it stops retrying (consumers and dead-letter writes alike) and
  answers. When it had to stop, every record of the batch is reported in
  ``batchItemFailures``: none is reported as done that may not be (Lambda resumes a stream
  from the lowest reported sequence number, so this repeats little).
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from processor.app.pipeline import Pipeline
from processor.app.routes import (
    refuse_windows,
)
from processor.aws import AwsClients, clients_for
from processor.core.consumer import RouteStats, StreamInfo
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.errors import ConfigError, RecordError, ShutdownRequested
from processor.ops.logs import configure_logging
from processor.process import tune_gc
from processor.settings import Settings, load_settings
from processor.sources.kinesis.wire import from_kinesis

if TYPE_CHECKING:
    from processor.ops.emf import EmfWriter

__all__ = ["handler", "reset"]

log = structlog.get_logger()

#: Lambda needs no lease table; these fill what the worker would require.
LAMBDA_DEFAULTS = {"checkpoints": {"application": "lambda"}, "stream": {"arn": "lambda"}}


#: Lambda's writable scratch space; it does not outlive the execution environment
LAMBDA_TMP = Path("/tmp")  # noqa: S108 - checked against, never written to here


def budget_margin_s(remaining_s: float) -> float:
    """How long before Lambda's timeout the handler stops retrying and answers: a tenth of the
    time left, at least 1 s (the answer, a consumer call in flight) and at most 10 s."""
    return min(10.0, max(1.0, remaining_s / 10))


@dataclass(slots=True)
class _Runtime:
    settings: Settings
    dispatcher: Dispatcher
    stats: dict[str, RouteStats]
    clients: AwsClients
    #: set at the invocation's deadline: consumers and dead-letter writes stop retrying
    stop: threading.Event
    #: ``[observability] cloudwatch = "emf"``: one flush per invocation (Lambda ships stdout)
    emf: EmfWriter | None = None


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


def _refuse_ephemeral_dead_letters(settings: Settings) -> None:
    """Dead letters only in /tmp vanish with the execution environment: opt in, or use SQS."""
    dead_letter = settings.dead_letter
    if dead_letter.sqs_queue_url or dead_letter.lambda_tmp or not dead_letter.path:
        return
    path = Path(dead_letter.path)
    if path.is_absolute() and (path == LAMBDA_TMP or LAMBDA_TMP in path.parents):
        raise ConfigError(
            "dead_letter.path",
            dead_letter.path,
            "in Lambda, /tmp is lost when the execution environment is recycled, and the "
            "letters with it; set dead_letter.sqs_queue_url (recommended), or "
            "dead_letter.lambda_tmp = true to accept that",
        )


def _build(first: dict[str, Any], clients: AwsClients | None = None) -> _Runtime:
    settings = load_settings(os.environ.get("DSP_CONFIG"), defaults=LAMBDA_DEFAULTS)
    tune_gc()
    configure_logging(settings.logging.level, "json")
    _refuse_ephemeral_dead_letters(settings)
    settings.only_stream  # noqa: B018 - a function reads its mapping's one stream: ConfigError
    refuse_windows(
        settings, "Lambda", "use the event source mapping's TumblingWindowInSeconds instead"
    )
    clients = clients or clients_for(
        settings.aws,
        region=os.environ.get("AWS_REGION", settings.aws.region),
        pool_size=10 + settings.batch.parallelism,
    )
    stop = threading.Event()
    # One attempt per invocation: the event source mapping owns retries and bisection.
    pipeline = Pipeline.from_settings(
        settings, clients=clients, stream=_stream_info(first), stop=stop, one_attempt=True
    )
    stats = pipeline.stats
    dispatcher = pipeline.dispatcher(stop)
    emf = None
    if settings.observability.cloudwatch == "emf":
        # prometheus_client only when asked for: it is a tenth of a cold start
        from processor.ops.emf import EmfWriter  # noqa: PLC0415
        from processor.ops.metrics import Metrics  # noqa: PLC0415

        emf = EmfWriter(
            Metrics(stats).registry,
            namespace=settings.observability.cloudwatch_namespace,
            application=settings.checkpoints.application,
        )
    return _Runtime(settings, dispatcher, stats, clients, stop, emf)


def reset() -> None:
    """Forget the cached configuration (tests; a new container does this by itself)."""
    with _Cache.lock:
        if _Cache.runtime is not None:
            _Cache.runtime.stop.set()
            _Cache.runtime.dispatcher.close()
        _Cache.runtime = None


def _item_identifier(raw: Any) -> str | None:
    """The sequence number Lambda knows a record by (DynamoDB Streams or Kinesis)."""
    if not isinstance(raw, dict):
        return None
    if raw.get("eventSource") == "aws:kinesis":
        number = (raw.get("kinesis") or {}).get("sequenceNumber")
    else:
        number = (raw.get("dynamodb") or {}).get("SequenceNumber")
    return str(number) if number is not None else None


def _deadline(context: Any, stop: threading.Event) -> threading.Timer | None:
    """A timer that sets ``stop`` :func:`budget_margin_s` before Lambda's timeout."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None  # no budget given (a local call)
    remaining_s = remaining() / 1000
    timer = threading.Timer(max(0.0, remaining_s - budget_margin_s(remaining_s)), stop.set)
    timer.daemon = True
    timer.start()
    return timer


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Process one event source mapping batch; answer Lambda's partial batch response."""
    raw_records = event.get("Records") or []
    if not raw_records:
        return {"batchItemFailures": []}
    with _Cache.lock:
        if _Cache.runtime is None:
            _Cache.runtime = _build(raw_records[0])
        runtime = _Cache.runtime
    runtime.stop.clear()
    timer = _deadline(context, runtime.stop)
    records: list[StreamRecord] = []
    malformed: list[tuple[object, Exception]] = []
    for raw in raw_records:
        try:
            records.append(_record(raw))
        except RecordError as exc:
            malformed.append((raw, exc))
    try:
        runtime.dispatcher.reject_malformed(malformed, None)
        unhandled = [r.sequence_number for r in runtime.dispatcher.dispatch(records)]
    except ShutdownRequested as exc:
        # out of time while retrying (a consumer, or a dead-letter write that keeps failing):
        # nothing of this batch may be reported as done
        unhandled = [i for i in map(_item_identifier, raw_records) if i is not None]
        log.error(  # noqa: TRY400 - an expected end, said in one line; no traceback
            "lambda_time_budget_spent", records=len(raw_records), error=str(exc)
        )
    finally:
        if timer is not None:
            timer.cancel()
    log.info("lambda_batch_handled", records=len(raw_records), failures=len(unhandled))
    if runtime.emf is not None:
        runtime.emf.flush()  # this invocation's gains: Lambda turns the lines into metrics
    return {"batchItemFailures": [{"itemIdentifier": i} for i in unhandled]}
