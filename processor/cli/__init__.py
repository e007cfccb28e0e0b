"""The ``dsp`` command line. The only place that reads the process environment.

Exit status: 0 done, 1 runtime failure, 2 bad configuration (nothing was read).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import structlog

from processor.app import build_app, check_config
from processor.aws_lambda import LAMBDA_DEFAULTS
from processor.cli.dead_letters import letters, redrive
from processor.cli.leases import import_kcl, prune, status
from processor.cli.parser import make_parser
from processor.errors import ConfigError, ProcessorError
from processor.kclpy_daemon.properties import IGNORED, read_properties, to_settings
from processor.ops.emf import EmfWriter
from processor.ops.iam import policy_for
from processor.ops.lambda_filters import lambda_filters
from processor.ops.logs import configure_logging
from processor.ops.metrics import HealthServer
from processor.ops.summary import stats_table
from processor.process import tune_gc
from processor.replay.run import run_capture, run_replay
from processor.settings import Settings, load_settings

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


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
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
                import_kcl(settings, settings.multilang.import_kcl_lease_table)
            return _run(args, settings)
        if args.command == "leases":
            if args.leases_command == "prune":
                return prune(args, settings)
            return import_kcl(settings, args.from_table, dry_run=args.dry_run)
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
                return redrive(args, settings)
            return letters(args, settings)
        if args.command == "status":
            return status(args, settings)
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
