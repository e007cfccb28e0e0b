"""`dsp dead-letter list | count | redrive`: the dead-letter file and queue."""

from __future__ import annotations

import argparse
import json
import threading
from collections import Counter
from typing import Any

import structlog

from processor.app import process_clients
from processor.app.pipeline import Pipeline
from processor.app.streams import resolve
from processor.aws import clients_for
from processor.errors import ConfigError
from processor.ops.text_table import render
from processor.replay.queue_letters import (
    count_queue,
    file_letters,
    peek_queue,
    redrive_queue,
    redrive_visibility_s,
)
from processor.replay.redrive import Redelivery, RedriveReport, redrive_file
from processor.settings import Settings

__all__ = ["letters", "redrive"]

log = structlog.get_logger()

EXIT_OK = 0
EXIT_FAILURE = 1


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


def redrive(args: argparse.Namespace, settings: Settings) -> int:
    path, queue = _places(args, settings)
    clients = process_clients(settings)
    stop = threading.Event()
    # the routes of the one stream redriven (--stream with several): no worker is built
    _, _, stream = resolve(settings.only_stream, clients)
    pipeline = Pipeline.from_settings(settings, clients=clients, stream=stream, stop=stop)
    only = set(args.route) if args.route else None
    policy = pipeline.policy
    report, seen = RedriveReport(), set[tuple[str, str, str]]()
    try:
        if path:
            redrive_file(
                path, pipeline.routes, policy, only_routes=only, tenancy=pipeline.tenancy,
                seen=seen, report=report,
            )  # fmt: skip
        if queue:
            redelivery = Redelivery(
                pipeline.routes, policy, report, only_routes=only, tenancy=pipeline.tenancy
            )
            redrive_queue(
                clients.sqs, queue, redelivery, replace_into=pipeline.sink,
                visibility_s=redrive_visibility_s(policy), seen=seen,
            )  # fmt: skip
    finally:
        stop.set()
        pipeline.close()
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


def letters(args: argparse.Namespace, settings: Settings) -> int:
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
