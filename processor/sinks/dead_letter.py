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
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from processor.aws import translate_client_error
from processor.errors import ConfigError, TransientError

__all__ = [
    "DeadLetter",
    "DeadLetterSink",
    "JsonlDeadLetterSink",
    "SqsDeadLetterSink",
    "read_dead_letters",
]

log = structlog.get_logger()

#: SQS's limit for one message and for one SendMessageBatch request (1 MiB since 2025)
SQS_MAX_BYTES = 1024 * 1024
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

    def check_writable(self) -> None:
        """Raise ConfigError naming the path unless a letter could be appended to it now.

        Run at start: a destination that cannot be written would otherwise be found only by
        the first poison record, whose shard then stalls retrying. It opens the file as a
        write would (creating its directory), and removes what it created.
        """
        made: list[Path] = []
        try:
            missing = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
            for directory in reversed(missing):
                directory.mkdir()
                made.append(directory)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
                made.append(self.path)
            os.close(fd)
        except OSError as exc:
            where = self.path if self.path.is_absolute() else f"{self.path} in {Path.cwd()}"
            raise ConfigError(
                "dead_letter.path",
                str(self.path),
                f"cannot write the dead-letter file {where}: {exc.strerror}; set "
                "dead_letter.path to a file in a writable directory (in the image: the data "
                "volume /var/lib/dsp)",
            ) from None
        finally:
            for created in reversed(made):
                with contextlib.suppress(OSError):
                    if created == self.path:
                        created.unlink()
                    else:
                        created.rmdir()

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
    take turns, across processes; ADR 0014).

    A redrive claims the file by renaming it while it holds the lock. A writer that opened
    the file before that and waited for the lock would append to the claimed copy, which
    the redrive has already read. So, once it holds the lock, a writer checks that ``path``
    still names the file it opened, and opens it again if not.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(fd)
        if current is not None and (current.st_ino, current.st_dev) == (
            opened.st_ino,
            opened.st_dev,
        ):
            break
        os.close(fd)  # renamed away while we waited: follow the path to its new file
    try:
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


#: one letter and its message body
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
            body = _dumps(entry.to_document())
            if len(body.encode()) > self._max_bytes:
                too_large.append(entry)
            else:
                bodies.append((entry, body))
        if too_large:
            self._overflow.send(too_large)
            bodies += [(e, _dumps(self._pointer(e))) for e in too_large]
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
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=0.1, max=5.0),
            retry=retry_if_exception_type(TransientError),
            sleep=self._sleep,
            reraise=True,
        )
        retrying(self._send_pending, pending)

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


def read_dead_letters(path: str | Path) -> Iterable[DeadLetter]:
    """Read back a JSONL dead-letter file (for redrive and for tests)."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield DeadLetter.from_document(json.loads(line))


def now_utc(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), tz=UTC)
