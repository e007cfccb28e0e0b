"""The dead-letter file under concurrent writers and redrives: nothing lost, nothing twice."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from processor.core.consumer import BatchResult
from processor.core.dead_letters import DeadLetter
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.replay.redrive import _snapshot, redrive_file
from processor.sinks.jsonl import JsonlDeadLetterSink, read_dead_letters
from processor.testing import make_record

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def letter(n: int) -> DeadLetter:
    record = make_record({"pk": {"S": f"k{n}"}}, event_id=f"e{n}", sequence_number=str(100 + n))
    return DeadLetter(record.raw, "r", "ValueError", "boom", 1, "s", NOW, NOW)


def test_a_writer_waiting_on_the_lock_follows_the_file_a_redrive_renamed(tmp_path: Path) -> None:
    """A writer that opened the file just before a redrive claimed it (by renaming it under
    the lock) appends to the new file, never to the claimed copy the redrive already read."""
    path = tmp_path / "dead.jsonl"
    sink = JsonlDeadLetterSink(path)
    sink.send([letter(0)])
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the redrive holds the writers' lock...
    writer = threading.Thread(target=sink.send, args=([letter(1)],))
    writer.start()
    time.sleep(0.5)  # ...while the writer opens the old file and waits for the lock
    claimed = path.with_name("dead.jsonl.redrive-1")
    os.replace(path, claimed)  # the redrive claims the file, still holding the lock
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    writer.join(5)
    assert [e.record["eventID"] for e in read_dead_letters(claimed)] == ["e0"]
    assert [e.record["eventID"] for e in read_dead_letters(path)] == ["e1"]


def test_concurrent_writers_and_repeated_claims_lose_and_repeat_nothing(tmp_path: Path) -> None:
    """Four writers append 1,200 letters while the file is claimed again and again: every
    letter is in exactly one claimed snapshot or in the file left at the end."""
    path = tmp_path / "dead.jsonl"
    writers = 4
    per_writer = 300
    done = threading.Event()

    def write(w: int) -> None:
        sink = JsonlDeadLetterSink(path)
        for i in range(per_writer):
            sink.send([letter(w * per_writer + i)])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    seen: list[str] = []

    def claim_once() -> None:
        for snapshot in _snapshot(path):
            seen.extend(e.record["eventID"] for e in read_dead_letters(snapshot))
            snapshot.unlink()

    def claim_until_done() -> None:
        while not done.is_set():
            claim_once()

    claimer = threading.Thread(target=claim_until_done)
    claimer.start()
    for t in threads:
        t.join(60)
    done.set()
    claimer.join(60)
    claim_once()
    assert sorted(seen) == sorted(f"e{n}" for n in range(writers * per_writer))


# -- one record, one letter (issue 15, soak) ---------------------------------------------------


def test_a_record_dead_lettered_twice_is_redriven_once_and_kept_once(tmp_path: Path) -> None:
    """A worker killed after dead-lettering but before its checkpoint: its successor reads the
    same records again and dead-letters them again. The dead-letter view (what a redrive
    sends and keeps) holds each record once."""
    path = tmp_path / "dl.jsonl"
    sink = JsonlDeadLetterSink(str(path))
    sink.send([letter(1), letter(2), letter(3)])
    sink.send([letter(2), letter(3)])  # the successor's copies
    calls: list[list[str]] = []

    def refuse_three(records: Sequence[StreamRecord]) -> BatchResult | None:
        calls.append([r.event_id for r in records])
        bad = {r.event_id: "HTTP 400" for r in records if r.event_id == "e3"}
        return BatchResult(rejected=bad) if bad else None

    report = redrive_file(path, [Route("r", refuse_three)], RetryPolicy(max_retries=0))
    assert calls == [["e1", "e2", "e3"]]
    assert report.delivered == {"r": 2}
    assert report.duplicates == 2
    assert [e.record["eventID"] for e in read_dead_letters(path)] == ["e3"]
