"""`dsp dead-letter redrive`: send dead-lettered records back through their routes.

The file is swapped out atomically (renamed to ``<path>.redrive-<pid>`` under the writers'
lock) so a worker still running keeps appending to a fresh file. Each entry whose route still
exists goes through that route with the normal retries; what succeeds is removed, what fails
again is appended back with its new error, entries of other routes are kept untouched. If the
redrive itself dies, its snapshot file stays beside the original and the next redrive picks
it up first: nothing is lost, at worst a record is delivered twice.

A record dead-lettered twice on one route (a worker killed after dead-lettering and before
its checkpoint; its successor handles the same records again) is redriven once, and kept once
if it fails again: the file after a redrive holds each record at most once per route.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from processor.core.consumer import RouteStats
from processor.core.dead_letters import DeadLetter
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.core.tenancy import Tenancy
from processor.errors import RecordError
from processor.sinks.jsonl import dumps, locked_append, read_dead_letters

__all__ = ["Redelivery", "RedriveReport", "identity", "redrive_file"]

log = structlog.get_logger()


@dataclass(slots=True)
class RedriveReport:
    delivered: dict[str, int] = field(default_factory=dict)
    failed_again: int = 0
    filtered: int = 0
    kept: int = 0
    #: letters of a record already seen for the same route (a worker that died after
    #: dead-lettering and before its checkpoint: its successor dead-lettered the records again)
    duplicates: int = 0
    #: queue messages that are not letters (or name an overflow letter that is not there):
    #: left in the queue; message id and why
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def identity(entry: DeadLetter) -> tuple[str, str, str]:
    """One record on one route: its event id and sequence number (as Lambda's
    itemIdentifier), whatever its error or attempt count."""
    record = entry.record
    stream = record.get("dynamodb") if isinstance(record, dict) else None
    sequence = stream.get("SequenceNumber") if isinstance(stream, dict) else None
    return entry.route, str(record.get("eventID")), str(sequence)


class _Collect:
    def __init__(self) -> None:
        self.entries: list[DeadLetter] = []

    def send(self, entries: Sequence[DeadLetter]) -> None:
        self.entries.extend(entries)


def _snapshot(path: Path) -> list[Path]:
    """Leftover snapshots of an interrupted redrive, plus the current file, renamed."""
    leftovers = sorted(path.parent.glob(path.name + ".redrive-*"))
    if path.exists():
        target = path.with_name(f"{path.name}.redrive-{os.getpid()}")
        with locked_append(path):
            os.replace(path, target)
        leftovers.append(target)
    return leftovers


def _once(
    letters: Iterable[DeadLetter], seen: set[tuple[str, str, str]], report: RedriveReport
) -> list[DeadLetter]:
    """Each record once per route (ADR 0014 addendum): repeats are counted, not sent."""
    entries = []
    for entry in letters:
        key = identity(entry)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        entries.append(entry)
    return entries


def _records(letters: list[DeadLetter]) -> tuple[list[StreamRecord], list[DeadLetter]]:
    """The letters' records, and the letters whose record still does not parse."""
    records: list[StreamRecord] = []
    malformed: list[DeadLetter] = []
    for entry in letters:
        try:
            records.append(StreamRecord.from_wire(entry.record, shard_id=entry.shard_id))
        except RecordError:
            malformed.append(entry)
    return records, malformed


class Redelivery:
    """Sends letters' records back through their routes, each route with its own dispatcher
    and the normal retries; counts into ``report``."""

    def __init__(
        self,
        routes: Sequence[Route],
        policy: RetryPolicy,
        report: RedriveReport,
        *,
        only_routes: set[str] | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        tenancy: Tenancy | None = None,
    ) -> None:
        self._by_name = {r.name: r for r in routes}
        self._policy = policy
        self.report = report
        self._only = only_routes
        self._stop = stop or threading.Event()
        self._sleep = sleep
        self._tenancy = tenancy

    def route(self, name: str) -> Route | None:
        """The route to redrive ``name``'s letters through; None keeps them (unknown route,
        or not among ``--route``)."""
        if self._only is not None and name not in self._only:
            return None
        return self._by_name.get(name)

    def send(self, route: Route, letters: list[DeadLetter]) -> list[DeadLetter]:
        """Redeliver one route's letters; returns the letters to keep: those whose record
        still does not parse, and those that failed again (with the new error and attempts)."""
        records, malformed = _records(letters)
        sink, stats = _Collect(), RouteStats()
        dispatcher = Dispatcher(
            [route],
            sink,
            self._policy,
            stats={route.name: stats},
            stop=self._stop,
            sleep=self._sleep,
            tenancy=self._tenancy,
        )
        dispatcher.dispatch(sorted(records, key=lambda r: r.sequence_int))
        dispatcher.close()
        report = self.report
        report.delivered[route.name] = report.delivered.get(route.name, 0) + stats["delivered"]
        report.failed_again += len(sink.entries)
        report.filtered += stats["filtered"]
        return malformed + sink.entries


def redrive_file(
    path: str | Path,
    routes: Sequence[Route],
    policy: RetryPolicy,
    *,
    only_routes: set[str] | None = None,
    stop: threading.Event | None = None,
    sleep: Callable[[float], None] | None = None,
    tenancy: Tenancy | None = None,
    seen: set[tuple[str, str, str]] | None = None,
    report: RedriveReport | None = None,
) -> RedriveReport:
    """Redrive the file at ``path``. ``seen`` collects every (route, event id, sequence
    number) handled, so a queue redrive after it skips the same letters."""
    path = Path(path)
    report = report if report is not None else RedriveReport()
    seen = seen if seen is not None else set()
    redelivery = Redelivery(
        routes, policy, report, only_routes=only_routes, stop=stop, sleep=sleep, tenancy=tenancy
    )
    for snapshot in _snapshot(path):
        keep: list[DeadLetter] = []
        entries = _once(read_dead_letters(snapshot), seen, report)
        for name in dict.fromkeys(e.route for e in entries):
            group = [e for e in entries if e.route == name]
            route = redelivery.route(name)
            keep.extend(group if route is None else redelivery.send(route, group))
        report.kept += len(keep)
        if keep:
            with locked_append(path) as fd:
                os.write(fd, "".join(dumps(e.to_document()) + "\n" for e in keep).encode())
                os.fsync(fd)
        snapshot.unlink()
    log.info(
        "redrive_finished",
        source=str(path),
        delivered=report.delivered,
        failed_again=report.failed_again,
        kept=report.kept,
        duplicates=report.duplicates,
    )
    return report
