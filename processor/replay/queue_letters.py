"""Dead letters in the SQS queue: redrive them, list them, count them.

Redrive (`dsp dead-letter redrive --source sqs|all`):

* Messages are received with long polling and a visibility timeout longer than a round of
  redeliveries, so no other reader sees a message while its record is being delivered.
* SQS standard queues return messages in no particular order, so letters are gathered in
  rounds (up to ``round_size``, 1,000, or until the queue is empty) and each route's letters
  of a round are delivered in stream order: one key's records keep their order within a
  round.
* A message is deleted only after its record was delivered. A record that fails again is
  replaced: a new message with the new error and attempt count is sent, then the old one is
  deleted. A crash in between leaves both, so the record may be delivered twice, and never
  zero times.
* A message naming an overflow-file letter (a letter too large for SQS) resolves to that
  letter. With ``--source all`` the file goes first, and a message whose letter the file
  redrive already handled is deleted.
* A message that is not a letter (not JSON, a field missing, a truncated body) is left in
  the queue, named in the report, and the redrive goes on. So are letters of a route that no
  longer exists or is not among ``--route``.
* It ends when a receive comes back empty. What was left becomes visible again at once.

SQS is at-least-once. Two redrives at once, or a redrive beside running workers, lose nothing,
but a message whose visibility runs out mid-delivery can be delivered twice. Webhook receivers
see the same ``Idempotency-Key`` (and, signed, ``webhook-id``), and versioned ``batch_write``
routes skip stale writes.

Listing (`dsp dead-letter list`) receives with a short visibility timeout and makes every
message visible again as soon as it has been read. Counting asks the queue's attributes and
receives nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import translate_client_error
from processor.core.dead_letters import DeadLetter, DeadLetterSink
from processor.core.retry import RetryPolicy
from processor.replay.redrive import Redelivery, RedriveReport, identity
from processor.sinks.jsonl import read_dead_letters

__all__ = [
    "QueueLetter",
    "count_queue",
    "file_letters",
    "peek_queue",
    "redrive_queue",
    "redrive_visibility_s",
]

log = structlog.get_logger()

#: SQS's bounds: at most 10 messages per receive, visibility up to 12 hours
_MAX_RECEIVE = 10
_MAX_VISIBILITY_S = 43_200
#: how long a peek hides a message before making it visible again (or failing to)
_PEEK_VISIBILITY_S = 30
#: letters gathered before a round is delivered (SQS gives no order; a round is sorted)
ROUND_SIZE = 1000
#: the least a message stays hidden during a redrive: a whole round's deliveries
_ROUND_VISIBILITY_S = 900.0


def redrive_visibility_s(policy: RetryPolicy) -> int:
    """Longer than a round of redeliveries: 15 minutes, or every attempt of the route's
    retries at the longest delay twice over if that is longer (at most SQS's 12 hours)."""
    attempts = max(policy.max_retries, 0) + 1
    longest = max(_ROUND_VISIBILITY_S, 2 * attempts * policy.max_delay_s)
    return int(min(_MAX_VISIBILITY_S, longest))


@dataclass(frozen=True, slots=True)
class QueueLetter:
    """One message: its letter, or why it is not one."""

    message_id: str
    receipt_handle: str
    letter: DeadLetter | None
    problem: str | None = None
    #: the overflow file the message names, when the letter itself is there
    overflow: str | None = None


def _call(operation: str, method: Any, **kwargs: Any) -> Any:
    try:
        return method(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise translate_client_error(exc, operation) from exc


class _OverflowIndex:
    """The letters of overflow files, by identity, read once each when a message names one."""

    def __init__(self) -> None:
        self._files: dict[str, dict[tuple[str, str, str], DeadLetter]] = {}

    def find(self, path: str, key: tuple[str, str, str]) -> DeadLetter | None:
        if path not in self._files:
            try:
                self._files[path] = {identity(e): e for e in read_dead_letters(path)}
            except (OSError, ValueError, KeyError):
                self._files[path] = {}
        return self._files[path].get(key)


def _parse(message: dict[str, Any], overflow: _OverflowIndex) -> QueueLetter:
    mid, handle = str(message["MessageId"]), str(message["ReceiptHandle"])
    try:
        document = json.loads(message.get("Body", ""))
    except ValueError as exc:
        return QueueLetter(mid, handle, None, f"not a dead letter: not JSON: {exc}")
    if not isinstance(document, dict):
        return QueueLetter(mid, handle, None, "not a dead letter: not a JSON object")
    try:
        if "overflow" in document:  # a pointer to a letter too large for a message
            key = (
                str(document["route"]),
                str(document.get("event_id")),
                str(document.get("sequence_number")),
            )
            letter = overflow.find(str(document["overflow"]), key)
            if letter is None:
                return QueueLetter(
                    mid, handle, None, f"its letter is not in {document['overflow']}"
                )
            return QueueLetter(mid, handle, letter, overflow=str(document["overflow"]))
        return QueueLetter(mid, handle, DeadLetter.from_document(document))
    except (ValueError, KeyError, TypeError) as exc:
        return QueueLetter(mid, handle, None, f"not a dead letter: {type(exc).__name__}: {exc}")


def _receive(sqs: Any, queue_url: str, *, visibility_s: int, wait_s: int) -> list[Any]:
    answer = _call(
        "ReceiveMessage",
        sqs.receive_message,
        QueueUrl=queue_url,
        MaxNumberOfMessages=_MAX_RECEIVE,
        VisibilityTimeout=visibility_s,
        WaitTimeSeconds=wait_s,
    )
    return list(answer.get("Messages") or [])


def _batches(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _MAX_RECEIVE):
        yield items[start : start + _MAX_RECEIVE]


def _per_message(
    operation: str, method: Any, queue_url: str, messages: list[QueueLetter], **extra: Any
) -> None:
    """One of SQS's batch calls on ``messages``, ten at a time."""
    for batch in _batches(messages):
        entries = [
            {"Id": str(i), "ReceiptHandle": m.receipt_handle, **extra} for i, m in enumerate(batch)
        ]
        _call(operation, method, QueueUrl=queue_url, Entries=entries)


def _delete(sqs: Any, queue_url: str, messages: list[QueueLetter]) -> None:
    _per_message("DeleteMessageBatch", sqs.delete_message_batch, queue_url, messages)


def _show_again(sqs: Any, queue_url: str, messages: list[QueueLetter]) -> None:
    """Make ``messages`` visible to other readers now."""
    _per_message(
        "ChangeMessageVisibilityBatch",
        sqs.change_message_visibility_batch,
        queue_url,
        messages,
        VisibilityTimeout=0,
    )


def redrive_queue(
    sqs: Any,
    queue_url: str,
    redelivery: Redelivery,
    *,
    replace_into: DeadLetterSink,
    visibility_s: int,
    wait_s: int = 1,
    seen: set[tuple[str, str, str]] | None = None,
    round_size: int = ROUND_SIZE,
) -> RedriveReport:
    """Redrive every letter in the queue through ``redelivery``; letters that fail again go to
    ``replace_into`` (the configured destination) before their old message is deleted."""
    report = redelivery.report
    seen = seen if seen is not None else set()
    overflow = _OverflowIndex()
    left: list[QueueLetter] = []
    replaced: set[tuple[str, str, str]] = set()  # sent back to this queue by this redrive
    while True:
        parsed: list[QueueLetter] = []
        while len(parsed) < round_size and (
            messages := _receive(sqs, queue_url, visibility_s=visibility_s, wait_s=wait_s)
        ):
            parsed += [_parse(m, overflow) for m in messages]
        if not parsed:
            break
        done: list[QueueLetter] = []
        by_route: dict[str, list[QueueLetter]] = {}
        for item in parsed:
            if item.letter is None:
                report.unreadable.append((item.message_id, item.problem or "?"))
                log.warning("dead_letter_message_unreadable", message_id=item.message_id,
                            problem=item.problem)  # fmt: skip
                left.append(item)
            elif identity(item.letter) in replaced:  # our own replacement: not again today
                left.append(item)
            elif identity(item.letter) in seen:  # handled from the file, or a repeat
                report.duplicates += 1
                done.append(item)
            else:
                seen.add(identity(item.letter))
                by_route.setdefault(item.letter.route, []).append(item)
        for name, items in by_route.items():
            route = redelivery.route(name)
            if route is None:
                report.kept += len(items)
                left.extend(items)
                continue
            letters = [i.letter for i in items if i.letter is not None]
            again = redelivery.send(route, letters)
            if again:
                replace_into.send(again)  # the new error and attempts, stored before...
                replaced.update(identity(letter) for letter in again)
                report.kept += len(again)
            done.extend(items)  # ...the old messages go
        _delete(sqs, queue_url, done)
    _show_again(sqs, queue_url, left)
    log.info(
        "redrive_finished",
        source=queue_url,
        delivered=report.delivered,
        failed_again=report.failed_again,
        kept=report.kept,
        unreadable=len(report.unreadable),
        duplicates=report.duplicates,
    )
    return report


def peek_queue(sqs: Any, queue_url: str, *, limit: int | None = None) -> list[QueueLetter]:
    """Up to ``limit`` messages, read and made visible again at once."""
    read: list[QueueLetter] = []
    overflow = _OverflowIndex()
    try:
        while limit is None or len(read) < limit:
            messages = _receive(sqs, queue_url, visibility_s=_PEEK_VISIBILITY_S, wait_s=0)
            if not messages:
                break
            read += [_parse(m, overflow) for m in messages]
    finally:
        _show_again(sqs, queue_url, read)
    return read[:limit] if limit is not None else read


def count_queue(sqs: Any, queue_url: str) -> dict[str, int]:
    """SQS's approximate counts: visible, in flight (being redriven or read), delayed."""
    names = {
        "ApproximateNumberOfMessages": "visible",
        "ApproximateNumberOfMessagesNotVisible": "in_flight",
        "ApproximateNumberOfMessagesDelayed": "delayed",
    }
    answer = _call(
        "GetQueueAttributes",
        sqs.get_queue_attributes,
        QueueUrl=queue_url,
        AttributeNames=list(names),
    )
    attributes = answer.get("Attributes") or {}
    return {label: int(attributes.get(name, 0)) for name, label in names.items()}


def file_letters(path: str | Path) -> list[DeadLetter]:
    """The letters in a dead-letter file, read in place (nothing is claimed)."""
    file = Path(path)
    return list(read_dead_letters(file)) if file.exists() else []
