"""`dsp replay` and `dsp capture`: the I/O around processor.replay.range."""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from processor.app import build_app, process_clients
from processor.app.pipeline import Pipeline
from processor.app.streams import resolve
from processor.core.consumer import RouteStats
from processor.core.records import StreamRecord
from processor.core.routing import Route, compile_filters
from processor.core.tenancy import TenantResolver
from processor.errors import ConfigError
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.leases.memory import MemoryLeaseStore
from processor.ops.summary import stats_table
from processor.ops.text_table import render
from processor.replay.progress import Progress
from processor.replay.range import (
    ArchiveWriter,
    ReplayRange,
    parse_bound,
    read_archive,
    replay_namespace,
)
from processor.runtime.rate import RateLimiter
from processor.runtime.reader import RecordWindow
from processor.runtime.worker import PositionFor
from processor.settings import Settings, StreamSettings

__all__ = ["run_capture", "run_replay"]

log = structlog.get_logger()

EXIT_OK, EXIT_DEAD_LETTERED = 0, 3


class _DryRun:
    """Counts what would be delivered, per route, tenant and event name; delivers nothing."""

    def __init__(self, resolver: TenantResolver) -> None:
        self._resolver = resolver
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def consumer(self, route: str) -> object:
        def count(records: Sequence[StreamRecord]) -> None:
            with self._lock:
                for r in records:
                    self.counts[
                        (route, self._resolver.tenant_of(r) or "-", r.event_name.value)
                    ] += 1

        return count

    def table(self) -> str:
        rows = [
            (route, tenant, event, str(n))
            for (route, tenant, event), n in sorted(self.counts.items())
        ]
        return render(("route", "tenant", "event", "records"), rows)


def _select_routes(settings: Settings, names: list[str] | None) -> Settings:
    if not names:
        return settings
    known = [r.name for r in settings.routes]
    for name in names:
        if name not in known:
            raise ConfigError("--route", name, f"no such route; routes: {', '.join(known)}")
    return settings.model_copy(update={"routes": [r for r in settings.routes if r.name in names]})


def _summary(settings: Settings, stats: dict[str, RouteStats], ranges: list[ReplayRange]) -> int:
    print(stats_table(settings, stats))
    counts: Counter[str] = Counter()
    for rng in ranges:
        counts.update(rng.skipped)
    skipped = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(counts.items()))
    if skipped:
        print(f"not delivered (outside the selection): {skipped}")
    dead = sum(s["dead_lettered"] for s in stats.values())
    if dead:
        print(f"{dead} record(s) were dead-lettered: exit status 3")
        return EXIT_DEAD_LETTERED
    return EXIT_OK


def _dry_routes(
    settings: Settings, dry: _DryRun, stream: str | None = None
) -> tuple[list[Route], dict[str, RouteStats]]:
    """The configured routes (of ``stream``) with their filters, each counting instead of
    delivering."""
    chosen = [r for r in settings.routes if not (stream and r.streams and stream not in r.streams)]
    routes = [
        Route(
            r.name,
            dry.consumer(r.name),  # type: ignore[arg-type]
            compile_filters(r.filters, extensions=r.filter_extensions),
        )
        for r in chosen
    ]
    return routes, {r.name: RouteStats() for r in chosen}


def _forget_earlier_run(dynamodb: Any, settings: Settings, namespace: str) -> None:
    """A replay without --resume starts over: its namespace's old checkpoints go."""
    store = DynamoDBLeaseStore(
        dynamodb, table=settings.checkpoints.table, application=namespace, stream_arn=""
    )
    store.ensure_table()
    if store.forget():
        log.info("replay_restarted", namespace=namespace)


def run_replay(args: argparse.Namespace, settings: Settings, stop: threading.Event) -> int:
    start = parse_bound(args.start or "trim-horizon", flag="--from", allow_trim=True)
    end = parse_bound(args.end, flag="--to", allow_trim=False) if args.end else None
    settings = _select_routes(settings, args.route)
    resolver = TenantResolver.from_settings(settings.tenancy.attribute, settings.tenancy.pattern)
    ranges: list[ReplayRange] = []  # one per stream: its precision and its kind of start

    def range_for(stream: StreamSettings) -> ReplayRange:
        rng = ReplayRange(
            start,
            end,
            frozenset(args.tenant) if args.tenant else None,
            resolver,
            granularity_s=stream.timestamp_granularity_s,
            at_timestamp=stream.source == "kinesis",
        )
        ranges.append(rng)
        return rng

    dry = _DryRun(resolver) if args.dry_run else None
    if args.from_file:  # an archive is one stream's records: that stream's routes
        rng = range_for(settings.only_stream)
        routes = _dry_routes(settings, dry) if dry is not None else None
        return _replay_files(args, settings, rng, stop, routes=routes, dry=dry)
    namespace = replay_namespace(
        settings.checkpoints.application,
        start,
        end,
        sorted(args.shard or []),
        sorted(r.name for r in settings.routes),
        sorted(args.tenant or []),
    )
    replay_settings = settings.model_copy(
        update={"checkpoints": settings.checkpoints.model_copy(update={"application": namespace})}
    )

    def positions(stream: StreamSettings) -> tuple[PositionFor, RecordWindow]:
        rng = range_for(stream)
        return rng.position_for, rng.window

    app = build_app(
        replay_settings,
        routes=(lambda stream: _dry_routes(settings, dry, stream)) if dry is not None else None,
        store_for=(lambda namespace, arn: MemoryLeaseStore()) if dry is not None else None,
        positions=positions,
        rate=RateLimiter(args.rate) if args.rate else None,
        only_shards=frozenset(args.shard) if args.shard else None,
    )
    if dry is None and not args.resume:
        for name, _ in replay_settings.named_streams:
            _forget_earlier_run(
                app.clients.dynamodb, replay_settings, replay_settings.lease_namespace(name)
            )
    log.info("replay_started", namespace=namespace, start=str(start), end=str(end) if end else None)
    progress = Progress(
        app.worker,
        start_time=start.time if start.kind == "time" else None,
        end_time=end.time if end is not None and end.kind == "time" else None,
    ).start()
    try:
        app.worker.run(stop=stop, stop_when_idle=args.idle_s)
    finally:
        progress.stop()
        app.close()
    if dry is not None:
        print(dry.table())
        return EXIT_OK
    if stop.is_set():
        print(f"replay interrupted; continue with the same command plus --resume ({namespace})")
    return _summary(settings, app.stats, ranges)


def _progress_file(paths: list[str], rng: ReplayRange) -> Path:
    """Where a file replay notes how far it got (beside the first archive, one per range)."""
    key = json.dumps([paths, str(rng.start), str(rng.end)]).encode()
    digest = hashlib.sha256(key).hexdigest()[:10]
    return Path(paths[0]).with_name(Path(paths[0]).name + f".replay-{digest}")


def _replay_files(
    args: argparse.Namespace,
    settings: Settings,
    rng: ReplayRange,
    stop: threading.Event,
    *,
    routes: tuple[list[Route], dict[str, RouteStats]] | None,
    dry: _DryRun | None,
) -> int:
    clients = process_clients(settings)
    _, _, stream = resolve(settings.only_stream, clients)  # the consumers' key schema
    pipeline = Pipeline.from_settings(
        settings, clients=clients, stream=stream, stop=stop, routes=routes
    )
    dispatcher = pipeline.dispatcher(stop)
    paths = [str(p) for p in args.from_file]
    state = _progress_file(paths, rng)
    done = int(state.read_text()) if args.resume and state.exists() else 0
    handled = 0
    batch: list[StreamRecord] = []
    malformed = []

    def flush() -> None:
        nonlocal handled, batch
        kept, _ = rng.window(batch)
        if kept:
            dispatcher.dispatch(kept)
        handled += len(batch)
        state.write_text(str(handled))
        batch = []

    try:
        for index, (doc, record, error) in enumerate(read_archive(paths)):
            if stop.is_set():
                break
            if index < done:
                handled = index + 1
                continue
            if record is None:
                malformed.append((doc, error))
                continue
            batch.append(record)
            if len(batch) >= settings.batch.max_records:
                flush()
        if batch and not stop.is_set():
            flush()
        if malformed:
            dispatcher.reject_malformed(malformed, None)  # type: ignore[arg-type]
    finally:
        dispatcher.close()
        pipeline.close()
    if dry is not None:
        print(dry.table())
        return EXIT_OK
    if not stop.is_set():
        state.unlink(missing_ok=True)
    print(f"replayed {handled} archived records from {len(paths)} file(s)")
    return _summary(settings, pipeline.stats, [rng])


def _archive_base(out: str, stream: str, several: bool) -> Path:
    """Where a stream's archive goes: ``--out`` itself, or with several streams
    ``archive.jsonl.gz`` -> ``archive-<stream>.jsonl.gz``, rotated as
    ``archive-<stream>-000001.jsonl.gz``... (one archive per stream: a file replay reads one
    stream's records)."""
    base = Path(out)
    if not several:
        return base
    stem, dot, rest = base.name.partition(".")
    return base.with_name(f"{stem}-{stream}{dot}{rest}")


def run_capture(args: argparse.Namespace, settings: Settings, stop: threading.Event) -> int:
    several = len(settings.named_streams) > 1
    writers = {
        name: ArchiveWriter(
            _archive_base(args.out, name, several),
            rotate_bytes=int(args.rotate_mb * 1024 * 1024),
        )
        for name, _ in settings.named_streams
    }
    capture_settings = settings.model_copy(
        update={
            "checkpoints": settings.checkpoints.model_copy(
                update={"application": f"{settings.checkpoints.application}-capture"}
            )
        }
    )
    stats = {name: {"capture": RouteStats()} for name in writers}

    def capture_route(stream: str) -> tuple[list[Route], dict[str, RouteStats]]:
        return [Route("capture", writers[stream])], stats[stream]

    app = build_app(capture_settings, routes=capture_route)
    try:
        summary = app.worker.run(stop=stop, stop_when_idle=args.stop_when_idle)
    finally:
        for writer in writers.values():
            writer.close()
        app.close()
    files = ", ".join(str(f) for w in writers.values() for f in w.files)
    captured = sum(s["capture"]["delivered"] for s in stats.values())
    print(
        f"captured {captured} records from {summary.records_read} read into "
        f"{files or 'no file (nothing to capture)'}"
    )
    return EXIT_OK
