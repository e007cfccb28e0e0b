"""Dead-letter destinations: where records go that could not be handled.

Every entry carries the whole record as received (DynamoDB JSON), never just metadata, so a
dead-lettered record can be inspected and redriven after a fix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from processor.aws import translate_client_error
from processor.errors import TransientError

__all__ = [
    "DeadLetter",
    "DeadLetterSink",
    "JsonlDeadLetterSink",
    "SqsDeadLetterSink",
    "read_dead_letters",
]

log = structlog.get_logger()

SQS_MAX_MESSAGE_BYTES = 256 * 1024
SQS_MAX_BATCH = 10


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record that could not be handled, with why."""

    record: dict[str, Any]
    route: str
    error_type: str
    error_message: str
    attempts: int
    shard_id: str | None
    first_attempt_at: datetime
    dead_lettered_at: datetime
    tenant: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "error": {"type": self.error_type, "message": self.error_message},
            "attempts": self.attempts,
            "shard_id": self.shard_id,
            "tenant": self.tenant,
            "sequence_number": self.record.get("dynamodb", {}).get("SequenceNumber"),
            "event_id": self.record.get("eventID"),
            "first_attempt_at": self.first_attempt_at.isoformat(),
            "dead_lettered_at": self.dead_lettered_at.isoformat(),
            "record": self.record,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> DeadLetter:
        return cls(
            record=doc["record"],
            route=doc["route"],
            error_type=doc["error"]["type"],
            error_message=doc["error"]["message"],
            attempts=int(doc["attempts"]),
            shard_id=doc.get("shard_id"),
            first_attempt_at=datetime.fromisoformat(doc["first_attempt_at"]),
            dead_lettered_at=datetime.fromisoformat(doc["dead_lettered_at"]),
            tenant=doc.get("tenant"),
        )


class DeadLetterSink(Protocol):
    def send(self, entries: Sequence[DeadLetter], /) -> None:
        """Store every entry durably before returning; raise TransientError if that failed."""


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), default=str, ensure_ascii=False)


class JsonlDeadLetterSink:
    """Append-only JSON Lines file, fsync'd after every write (one line per record)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def send(self, entries: Sequence[DeadLetter]) -> None:
        if not entries:
            return
        payload = "".join(_dumps(e.to_document()) + "\n" for e in entries).encode()
        with self._lock:
            try:
                with locked_append(self.path) as fd:
                    os.write(fd, payload)
                    os.fsync(fd)
            except OSError as exc:
                raise TransientError(f"cannot write dead-letter file {self.path}: {exc}") from exc
        log.warning("records_dead_lettered", destination=str(self.path), count=len(entries))


@contextlib.contextmanager
def locked_append(path: Path) -> Iterator[int]:
    """An append-only descriptor on ``path`` under an exclusive ``flock`` (writers and redrive
    take turns, across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


class SqsDeadLetterSink:
    """SQS queue, batched with SendMessageBatch; oversized documents go to ``overflow``."""

    def __init__(self, sqs_client: Any, queue_url: str, *, overflow: DeadLetterSink) -> None:
        self._sqs = sqs_client
        self.queue_url = queue_url
        self._overflow = overflow

    def send(self, entries: Sequence[DeadLetter]) -> None:
        too_large: list[DeadLetter] = []
        bodies: list[tuple[DeadLetter, str]] = []
        for entry in entries:
            body = _dumps(entry.to_document())
            if len(body.encode()) > SQS_MAX_MESSAGE_BYTES:
                too_large.append(entry)
            else:
                bodies.append((entry, body))
        if too_large:
            self._overflow.send(too_large)
        for start in range(0, len(bodies), SQS_MAX_BATCH):
            chunk = bodies[start : start + SQS_MAX_BATCH]
            request = [{"Id": str(i), "MessageBody": body} for i, (_, body) in enumerate(chunk)]
            try:
                response = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=request)
            except (ClientError, BotoCoreError) as exc:
                raise translate_client_error(exc, "SendMessageBatch") from exc
            failed = response.get("Failed") or []
            if failed:
                reasons = ", ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
                raise TransientError(f"SQS rejected {len(failed)} dead-letter messages ({reasons})")
        log.warning("records_dead_lettered", destination=self.queue_url, count=len(bodies))


def read_dead_letters(path: str | Path) -> Iterable[DeadLetter]:
    """Read back a JSONL dead-letter file (for redrive and for tests)."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield DeadLetter.from_document(json.loads(line))


def now_utc(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), tz=UTC)
