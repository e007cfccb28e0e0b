"""The dead-letter queue: letters as SQS messages (SendMessageBatch), a letter too large
for a message stored whole in the overflow file with its location sent instead."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import translate_client_error
from processor.core.dead_letters import DeadLetter, DeadLetterSink
from processor.errors import TransientError
from processor.retries import QUICK, retrying
from processor.sinks.jsonl import dumps

__all__ = ["SQS_MAX_BATCH", "SQS_MAX_BYTES", "SqsDeadLetterSink"]

log = structlog.get_logger()

#: SQS's limit for one message and for one SendMessageBatch request (1 MiB since 2025)
SQS_MAX_BYTES = 1024 * 1024
SQS_MAX_BATCH = 10

#: a letter and its message body
_Body = tuple[DeadLetter, str]


class SqsDeadLetterSink:
    """SQS queue, batched with SendMessageBatch by count and by size.

    * Each request holds at most 10 messages and ``max_bytes`` in all (SQS allows 1 MiB for
      one message and for a whole batch: one setting, ``[dead_letter] sqs_max_bytes``).
    * A letter too large for one message goes whole to ``overflow`` (the file destination),
      and the queue gets a small message naming where it is: never truncated, never lost.
    * When SQS accepts part of a batch, only the entries it failed are sent again. Those it
      refuses for good (``SenderFault``) go to ``overflow`` with SQS's reason; the rest are
      retried with backoff, and a TransientError is raised only if they still fail.
    """

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        *,
        overflow: DeadLetterSink,
        max_bytes: int = SQS_MAX_BYTES,
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sqs = sqs_client
        self.queue_url = queue_url
        self._overflow = overflow
        self._max_bytes = max_bytes
        self._attempts = attempts
        self._sleep = sleep

    def send(self, entries: Sequence[DeadLetter]) -> None:
        too_large: list[DeadLetter] = []
        bodies: list[_Body] = []
        for entry in entries:
            body = dumps(entry.to_document())
            if len(body.encode()) > self._max_bytes:
                too_large.append(entry)
            else:
                bodies.append((entry, body))
        if too_large:
            self._overflow.send(too_large)
            bodies += [(e, dumps(self._pointer(e))) for e in too_large]
        for chunk in self._chunks(bodies):
            self._send_chunk(chunk)
        log.warning("records_dead_lettered", destination=self.queue_url, count=len(bodies))

    def _pointer(self, entry: DeadLetter) -> dict[str, Any]:
        """The queue's message for a letter kept in the overflow destination."""
        document = entry.to_document()
        return {
            "overflow": str(getattr(self._overflow, "path", "overflow")),
            "event_id": entry.record.get("eventID"),
            "sequence_number": document.get("sequence_number"),
            "route": entry.route,
            "error": document["error"],
            "dead_lettered_at": document.get("dead_lettered_at"),
        }

    def _chunks(
        self, bodies: list[tuple[DeadLetter, str]]
    ) -> Iterator[list[tuple[DeadLetter, str]]]:
        chunk: list[tuple[DeadLetter, str]] = []
        size = 0
        for item in bodies:
            length = len(item[1].encode())
            if chunk and (len(chunk) == SQS_MAX_BATCH or size + length > self._max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(item)
            size += length
        if chunk:
            yield chunk

    def _send_chunk(self, chunk: list[_Body]) -> None:
        pending = {str(i): item for i, item in enumerate(chunk)}
        # inside the dead-letter writer's own loop (ADR 0027): only the failed messages of a
        # batch are sent again here, so one that SQS took is never sent twice
        resend = retrying(wait=QUICK, attempts=self._attempts, sleep=self._sleep)
        resend(self._send_pending, pending)

    def _send_pending(self, pending: dict[str, _Body]) -> None:
        request = [{"Id": i, "MessageBody": body} for i, (_, body) in pending.items()]
        try:
            response = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=request)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "SendMessageBatch") from exc
        for ok in response.get("Successful") or []:
            pending.pop(str(ok.get("Id")), None)
        refused: list[DeadLetter] = []
        for failed in response.get("Failed") or []:
            if failed.get("SenderFault"):
                entry, _ = pending.pop(str(failed.get("Id")))
                why = f"SQS refused it ({failed.get('Code')}: {failed.get('Message', '')})"
                refused.append(replace(entry, error_message=f"{entry.error_message}; {why}"))
        if refused:
            self._overflow.send(refused)
        if pending:
            raise TransientError(f"SQS failed {len(pending)} dead-letter messages; resending them")
