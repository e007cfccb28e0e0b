"""The dead-letter file: JSON Lines, appended under an exclusive lock, fsync'd before a
batch counts as stored (ADR 0014). Every entry carries the whole record as received
(DynamoDB JSON), so a dead-lettered record can be inspected and redriven after a fix."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import structlog

from processor.core.dead_letters import DeadLetter
from processor.errors import ConfigError, TransientError

__all__ = ["JsonlDeadLetterSink", "dumps", "locked_append", "read_dead_letters"]

log = structlog.get_logger()


def dumps(document: dict[str, Any]) -> str:
    """A letter's document as one line of JSON."""
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
        payload = "".join(dumps(e.to_document()) + "\n" for e in entries).encode()
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


def read_dead_letters(path: str | Path) -> Iterable[DeadLetter]:
    """Read back a JSONL dead-letter file (for redrive and for tests)."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield DeadLetter.from_document(json.loads(line))
