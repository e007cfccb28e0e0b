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

from processor.app import build_app
from processor.app.routes import retry_policy, tenancy_for
from processor.core._rate import RateLimiter
from processor.core.consumer import RouteStats
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.routing import Route, compile_filters
from processor.core.tenancy import TenantResolver
from processor.errors import ConfigError
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.leases.memory import MemoryLeaseStore
from processor.ops.summary import stats_table
from processor.ops.tables import render
from processor.replay.progress import Progress
from processor.replay.range import (
    ArchiveWriter,
    ReplayRange,
    parse_bound,
    read_archive,
    replay_namespace,
)
from processor.settings import Settings

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


def _summary(settings: Settings, stats: dict[str, RouteStats], rng: ReplayRange) -> int:
    print(stats_table(settings, stats))
    skipped = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(rng.skipped.items()))
    if skipped:
        print(f"not delivered (outside the selection): {skipped}")
    dead = sum(s["dead_lettered"] for s in stats.values())
    if dead:
        print(f"{dead} record(s) were dead-lettered: exit status 3")
        return EXIT_DEAD_LETTERED
    return EXIT_OK


def _dry_routes(settings: Settings, dry: _DryRun) -> tuple[list[Route], dict[str, RouteStats]]:
    """The configured routes with their filters, each counting instead of delivering."""
    routes = [
        Route(
            r.name,
            dry.consumer(r.name),  # type: ignore[arg-type]
            compile_filters(r.filters, extensions=r.filter_extensions),
        )
        for r in settings.routes
    ]
    return routes, {r.name: RouteStats() for r in settings.routes}


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
    rng = ReplayRange(
        start,
        end,
        frozenset(args.tenant) if args.tenant else None,
        resolver,
        granularity_s=settings.stream.timestamp_granularity_s,
        at_timestamp=settings.stream.source == "kinesis",
    )
    dry = _DryRun(resolver) if args.dry_run else None
    routes = _dry_routes(settings, dry) if dry is not None else None
    if args.from_file:
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
    app = build_app(
        replay_settings,
        routes=routes,
        store=MemoryLeaseStore() if dry is not None else None,
        position_for=rng.position_for,
        window=rng.window,
        rate=RateLimiter(args.rate) if args.rate else None,
        only_shards=frozenset(args.shard) if args.shard else None,
    )
    if dry is None and not args.resume:
        _forget_earlier_run(app.clients.dynamodb, replay_settings, namespace)
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
    return _summary(settings, app.stats, rng)


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
    app = build_app(settings, routes=routes, store=MemoryLeaseStore())
    dispatcher = Dispatcher(
        app.routes,
        app.sink,
        retry_policy(settings),
        stats=app.stats,
        stop=stop,
        tenancy=tenancy_for(settings),
    )
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
        app.close()
    if dry is not None:
        print(dry.table())
        return EXIT_OK
    if not stop.is_set():
        state.unlink(missing_ok=True)
    print(f"replayed {handled} archived records from {len(paths)} file(s)")
    return _summary(settings, app.stats, rng)


def run_capture(args: argparse.Namespace, settings: Settings, stop: threading.Event) -> int:
    writer = ArchiveWriter(args.out, rotate_bytes=int(args.rotate_mb * 1024 * 1024))
    capture_settings = settings.model_copy(
        update={
            "checkpoints": settings.checkpoints.model_copy(
                update={"application": f"{settings.checkpoints.application}-capture"}
            )
        }
    )
    stats = {"capture": RouteStats()}
    app = build_app(capture_settings, routes=([Route("capture", writer)], stats))
    try:
        summary = app.worker.run(stop=stop, stop_when_idle=args.stop_when_idle)
    finally:
        writer.close()
        app.close()
    files = ", ".join(str(f) for f in writer.files) or "no file (nothing to capture)"
    captured = stats["capture"]["delivered"]
    print(f"captured {captured} records from {summary.records_read} read into {files}")
    return EXIT_OK
