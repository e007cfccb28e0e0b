"""The ``dsp`` command line. The only place that reads the process environment.

Exit status: 0 done, 1 runtime failure, 2 bad configuration (nothing was read).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from types import FrameType
from typing import Any

import structlog

from processor._runtime import tune_gc
from processor.app import build_app, check_config, stream_arn_for, stream_source
from processor.app.routes import retry_policy, tenancy_for
from processor.aws import AwsClients, clients_for
from processor.aws_lambda import LAMBDA_DEFAULTS
from processor.cli.parser import _parser
from processor.errors import ConfigError, ProcessorError
from processor.leases.cleanup import plan_cleanup
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.leases.kcl_import import describe, read_kcl_leases, to_lease
from processor.multilang.properties import IGNORED, read_properties, to_settings
from processor.ops.emf import EmfWriter
from processor.ops.iam import policy_for
from processor.ops.lambda_filters import lambda_filters
from processor.ops.logs import configure_logging
from processor.ops.metrics import HealthServer
from processor.ops.status import render_json, render_table, status_rows
from processor.ops.summary import stats_table
from processor.ops.tables import render
from processor.replay.run import run_capture, run_replay
from processor.settings import Settings, StreamSettings, load_settings
from processor.settings.sections import DEFAULT_STREAM
from processor.sinks.queue_letters import (
    count_queue,
    file_letters,
    peek_queue,
    redrive_queue,
    redrive_visibility_s,
)
from processor.sinks.redrive import Redelivery, RedriveReport, redrive_file

__all__ = ["main"]

log = structlog.get_logger()

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _iam_policy(args: argparse.Namespace, settings: Settings) -> int:
    policy = policy_for(
        settings,
        account=args.account,
        commands=tuple(c.strip() for c in args.commands.split(",") if c.strip()),
        create_lease_table=not args.no_create_table,
    )
    if args.json:
        print(json.dumps({"policy": policy.document(), "notes": policy.notes}, indent=2))
        return EXIT_OK
    print(policy.to_json())
    for note in policy.notes:
        print(f"dsp: note: {note}", file=sys.stderr)
    return EXIT_OK


def _json_failure(args: argparse.Namespace, exc: ProcessorError) -> None:
    """check-config --json: the failure as one JSON object on stdout too."""
    if getattr(args, "json", False) and args.command == "check-config":
        answer = {"ok": False, "error": str(exc), "fix": exc.fix}
        if isinstance(exc, ConfigError):
            answer["key"] = exc.key
        print(json.dumps(answer))


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    logging: dict[str, str] = {}
    if args.log_level:
        logging["level"] = args.log_level
    if args.log_format:
        logging["format"] = args.log_format
    return {"logging": logging} if logging else {}


def _load(args: argparse.Namespace) -> Settings:
    if getattr(args, "properties", None):
        properties = read_properties(args.properties)
        sections, unused = to_settings(properties)
        for key in unused:
            note = "ignored (Java daemon only)" if key in IGNORED else "unknown, ignored"
            print(f"dsp: warning: {args.properties}: {key}: {note}", file=sys.stderr)
        settings = load_settings(args.config, defaults=sections)
    elif args.command == "lambda-filters":  # a function's configuration, as the handler reads it
        settings = load_settings(args.config, defaults=LAMBDA_DEFAULTS)
    else:
        settings = load_settings(args.config)
    if overrides := _overrides(args):
        merged = settings.model_dump()
        merged["logging"].update(overrides["logging"])
        links = settings.ignored_variables
        settings = Settings.model_validate(merged)
        settings._service_links = links
    return settings.for_streams(getattr(args, "stream", None))


def _on_signals(stop: threading.Event) -> None:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    stop = threading.Event()
    _on_signals(stop)
    tune_gc()
    consumer_stop = threading.Event()
    app = build_app(settings, consumer_stop=consumer_stop)
    health = None
    obs = settings.observability
    if obs.metrics_port is not None:
        health = HealthServer(
            app.metrics,
            alive=app.worker.alive,
            ready=lambda: app.worker.ready(obs.ready_max_stall_s),
            host=obs.host,
            port=obs.metrics_port,
        ).start()
        log.info("health_endpoint_started", port=health.port)
    emf_stop = threading.Event()
    emf = None
    if obs.cloudwatch == "emf":
        emf = EmfWriter(
            app.metrics.registry,
            namespace=obs.cloudwatch_namespace,
            application=settings.checkpoints.application,
        ).start(emf_stop, obs.cloudwatch_interval_s)
    try:
        summary = app.worker.run(stop=stop, stop_when_idle=args.stop_when_idle)
    finally:
        consumer_stop.set()
        emf_stop.set()  # one last line with the final gains
        if emf is not None:
            emf.join(timeout=5)
        if health is not None:
            health.stop()
        app.close()
    log.info("run_summary", routes={n: s.snapshot() for n, s in app.stats.items()})
    if args.stop_when_idle is not None:
        print(stats_table(settings, app.stats))
    return EXIT_FAILURE if summary.reader_failures else EXIT_OK


def _lease_store(
    settings: Settings, clients: AwsClients, *, stream: str, stream_arn: str = ""
) -> DynamoDBLeaseStore:
    """The leases of one of the application's streams (``stream_arn``: recorded in leases
    this command writes)."""
    return DynamoDBLeaseStore(
        clients.dynamodb,
        table=settings.checkpoints.table,
        application=settings.lease_namespace(stream),
        stream_arn=stream_arn,
    )


def _status(args: argparse.Namespace, settings: Settings) -> int:
    """The lease table, grouped by stream (one table, or one JSON object, per stream)."""
    clients = clients_for(settings.aws, pool_size=2)
    several = len(settings.named_streams) > 1
    tables: list[str] = []
    documents: dict[str, Any] = {}
    for name, _ in settings.named_streams:
        leases = _lease_store(settings, clients, stream=name).list_leases()
        listed: set[str] | None = None
        try:  # after the leases: a lease read before the listing began is listed unless it left
            source, arn = stream_source(settings, clients, name)
            listed = {shard.shard_id for shard in source.describe(arn).shards}
        except ProcessorError as exc:
            where = f"the stream {name}" if several else "the stream"
            tables.append(f"dsp status: {where} was not listed ({exc}); trimmed leases not shown")
        rows = status_rows(leases, now=time.time(), listed=listed)
        documents[name] = json.loads(render_json(rows))
        heading = f"stream {name} ({settings.lease_namespace(name)}):\n" if several else ""
        tables.append(heading + render_table(rows))
    if args.json:
        print(json.dumps({"streams": documents} if several else documents[DEFAULT_STREAM]))
    else:
        print("\n\n".join(tables))
    return EXIT_OK


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    """`dsp leases prune`: the worker's cleanup rules (ADR 0024) over the whole table at once,
    for a table an older version filled; a dry run unless --apply. Every stream in turn."""
    failed = 0
    for name, stream in settings.named_streams:
        failed += _prune_stream(args, settings, name, stream)
    return EXIT_OK if failed == 0 else EXIT_FAILURE


def _prune_stream(
    args: argparse.Namespace, settings: Settings, name: str, stream: StreamSettings
) -> int:
    """Prune one stream's leases; how many deletes failed."""
    clients = clients_for(settings.aws, pool_size=2)
    store = _lease_store(settings, clients, stream=name)
    leases = store.list_leases()  # before the listing (see _status)
    source, arn = stream_source(settings, clients, name)
    listed = source.describe(arn).shards
    todo = plan_cleanup(
        leases,
        listed,
        on_trimmed=stream.on_trimmed,
        now=time.time(),
        timeout_s=settings.checkpoints.lease_timeout_s,
        limit=len(leases),
    )
    by_reason: dict[str, int] = {}
    for deletion in todo.delete:
        by_reason[deletion.reason] = by_reason.get(deletion.reason, 0) + 1
    reasons = ", ".join(
        f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(by_reason.items())
    )
    print(
        f"prune: {len(leases)} leases of {settings.lease_namespace(name)} in "
        f"{settings.checkpoints.table}; the stream lists {len(listed)} shards; "
        f"{len(todo.delete)} to delete ({reasons or 'none'}), "
        f"{len(leases) - len(todo.delete)} kept"
    )
    for lease in todo.trimmed_unread:
        print(
            f"prune: trimmed unread: {lease.shard_id} left the stream before it was read to "
            f"the end (checkpoint {lease.checkpoint or 'none'}); stream.on_trimmed = "
            f"{stream.on_trimmed!r} "
            + ("deletes it" if stream.on_trimmed == "skip" else "keeps it")
        )
    if not args.apply:
        print("prune: dry run: nothing deleted; --apply deletes them")
        return 0
    marked = all(store.mark_from_start(child) for child in todo.mark_from_start)
    deleted = failed = 0
    for deletion in todo.delete:
        if deletion.reason == "left_stream" and not marked:
            continue  # a child's start could not be recorded: its parent stays this time
        try:
            deleted += store.delete(deletion.lease)
        except ProcessorError as exc:
            failed += 1
            log.warning("lease_prune_failed", shard_id=deletion.lease.shard_id, error=str(exc))
    changed = len(todo.delete) - deleted - failed
    print(
        f"prune: {deleted} deleted"
        + (f", {changed} changed since they were read (kept; run it again)" if changed else "")
        + (f", {failed} failed (run it again)" if failed else "")
    )
    log.info("leases_pruned", stream=name, deleted=deleted, changed=changed, failed=failed)
    return failed


def _places(args: argparse.Namespace, settings: Settings) -> tuple[str | None, str | None]:
    """The file and the queue that ``--source`` names, as configured; ConfigError if one it
    names explicitly is not configured."""
    dead = settings.dead_letter
    if args.source == "file" and not dead.path:
        raise ConfigError("dead_letter.path", dead.path, "--source file reads it; set it")
    if args.source == "sqs" and not dead.sqs_queue_url:
        raise ConfigError("dead_letter.sqs_queue_url", None, "--source sqs reads it; set it")
    path = dead.path if args.source in ("file", "all") else None
    queue = dead.sqs_queue_url if args.source in ("sqs", "all") else None
    return path, queue


def _redrive(args: argparse.Namespace, settings: Settings) -> int:
    path, queue = _places(args, settings)
    app = build_app(settings)
    only = set(args.route) if args.route else None
    policy = retry_policy(settings)
    report, seen = RedriveReport(), set[tuple[str, str, str]]()
    try:
        if path:
            redrive_file(
                path, app.routes, policy, only_routes=only, tenancy=tenancy_for(settings),
                seen=seen, report=report,
            )  # fmt: skip
        if queue:
            redelivery = Redelivery(
                app.routes, policy, report, only_routes=only, tenancy=tenancy_for(settings)
            )
            redrive_queue(
                app.clients.sqs, queue, redelivery, replace_into=app.sink,
                visibility_s=redrive_visibility_s(policy), seen=seen,
            )  # fmt: skip
    finally:
        app.close()
    delivered = sum(report.delivered.values())
    per_route = ", ".join(f"{k}: {v}" for k, v in report.delivered.items()) or "-"
    where = " and ".join(p for p in (path, queue) if p)
    print(
        f"redrive: {delivered} delivered ({per_route}), {report.failed_again} failed again, "
        f"{report.filtered} no longer match their route, {report.kept} kept in {where}"
        + (f"; {report.duplicates} duplicate letters dropped" if report.duplicates else "")
    )
    for message_id, problem in report.unreadable:
        print(f"redrive: left in the queue: message {message_id}: {problem}")
    return EXIT_OK if report.failed_again == 0 else EXIT_FAILURE


def _import_kcl(settings: Settings, table: str, *, dry_run: bool = False) -> int:
    """`dsp leases import-kcl` (and `dsp multilang` with multilang.import_kcl_lease_table)."""
    clients = clients_for(settings.aws, pool_size=2)
    kcl = read_kcl_leases(clients.dynamodb, table)
    if not kcl:
        raise ConfigError("--from-table", table, "the table holds no KCL lease")
    print(describe(kcl))
    if dry_run:
        print(f"import-kcl: {len(kcl)} KCL leases read from {table}; --dry-run: nothing written")
        return EXIT_OK
    settings.only_stream  # noqa: B018 - a KCL application reads one stream: --stream names it
    name = settings.named_streams[0][0]
    arn = stream_arn_for(settings, clients, name)
    store = _lease_store(settings, clients, stream=name, stream_arn=arn)
    store.ensure_table()
    written = sum(store.import_lease(to_lease(lease)) for lease in kcl)
    print(
        f"import-kcl: {written} leases written to {settings.checkpoints.table} "
        f"(application {settings.lease_namespace(name)}), {len(kcl) - written} kept "
        "(dsp already had them)"
    )
    log.info("kcl_leases_imported", table=table, read=len(kcl), written=written)
    return EXIT_OK


def _letters(args: argparse.Namespace, settings: Settings) -> int:
    """`dsp dead-letter list` and `count`."""
    path, queue = _places(args, settings)
    sqs = clients_for(settings.aws, pool_size=2).sqs if queue else None
    if args.dead_letter_command == "count":
        counts: dict[str, Any] = {}
        if path:
            letters = file_letters(path)
            counts["file"] = {
                "path": path,
                "letters": len(letters),
                "by_route": dict(Counter(e.route for e in letters)),
            }
        if queue:
            counts["sqs"] = {"queue_url": queue, **count_queue(sqs, queue)}
        if args.json:
            print(json.dumps(counts))
        else:
            for place, figures in counts.items():
                print(f"{place}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
        return EXIT_OK
    only = set(args.route) if args.route else None
    rows: list[dict[str, Any]] = []
    if path:
        rows += [{"source": "file", **e.to_document()} for e in file_letters(path)]
    if queue:
        for item in peek_queue(sqs, queue):
            doc = item.letter.to_document() if item.letter else {"problem": item.problem}
            rows.append({"source": "sqs", "message_id": item.message_id, **doc})
    rows = [r for r in rows if only is None or r.get("route") in only][: args.limit]
    if args.json:
        print(json.dumps(rows, default=str))
        return EXIT_OK
    print(
        render(
            ("source", "route", "sequence number", "attempts", "error", "dead-lettered at"),
            [
                (
                    r["source"],
                    str(r.get("route", "?")),
                    str(r.get("sequence_number") or "-"),
                    str(r.get("attempts", "-")),
                    str(r.get("problem") or f"{r['error']['type']}: {r['error']['message']}")[:80],
                    str(r.get("dead_lettered_at", "-")),
                )
                for r in rows
            ],
        )
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _load(args)
    except ConfigError as exc:
        _json_failure(args, exc)
        print(f"dsp: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.logging.level, settings.logging.format)
    for name in settings.ignored_variables:
        log.debug("kubernetes_service_link_ignored", variable=name)
    try:
        if args.command == "check-config":
            summary = check_config(settings, offline=args.offline)
            where = args.config or "environment"
            if args.json:
                print(json.dumps({"ok": True, "config": where, "summary": summary}))
            else:
                print(f"{where}: {summary}")
            return EXIT_OK
        if args.command == "multilang":
            if settings.multilang is None:
                raise ConfigError(  # noqa: TRY301 - reported like every configuration error
                    "--properties", None, "give a KCL properties file or a [multilang] section"
                )
            if settings.multilang.import_kcl_lease_table:
                _import_kcl(settings, settings.multilang.import_kcl_lease_table)
            return _run(args, settings)
        if args.command == "leases":
            if args.leases_command == "prune":
                return _prune(args, settings)
            return _import_kcl(settings, args.from_table, dry_run=args.dry_run)
        if args.command == "iam-policy":
            return _iam_policy(args, settings)
        if args.command == "lambda-filters":
            filters = lambda_filters(settings)
            print(json.dumps(filters.criteria or {}))
            for note in filters.notes:
                print(f"dsp: note: no FilterCriteria: {note}", file=sys.stderr)
            return EXIT_OK
        if args.command == "dead-letter":
            if args.dead_letter_command == "redrive":
                return _redrive(args, settings)
            return _letters(args, settings)
        if args.command == "status":
            return _status(args, settings)
        if args.command in ("replay", "capture"):
            if args.command == "replay" and not args.start and not args.from_file:
                raise ConfigError(  # noqa: TRY301 - reported like every configuration error
                    "--from", None, "give a start: trim-horizon, a sequence number or a time"
                )
            stop = threading.Event()
            _on_signals(stop)
            tune_gc()
            runner = run_replay if args.command == "replay" else run_capture
            return runner(args, settings, stop)
        return _run(args, settings)
    except ConfigError as exc:
        _json_failure(args, exc)
        print(f"dsp: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ProcessorError as exc:
        _json_failure(args, exc)
        # for a person: one line, what failed and the likely fix; the traceback at DEBUG
        log.debug("run_failed", error_type=type(exc).__name__, error=str(exc), exc_info=True)
        fix = f"; {exc.fix}" if exc.fix else ""
        print(f"dsp {args.command}: {exc}{fix}", file=sys.stderr)
        # check-config answers "is this configuration usable here": 0 or 2, as documented
        return EXIT_CONFIG if args.command == "check-config" else EXIT_FAILURE
