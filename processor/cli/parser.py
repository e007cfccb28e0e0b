"""The ``dsp`` argument parser: one builder per command."""

from __future__ import annotations

import argparse
import os

from processor import __version__
from processor.ops.iam import COMMANDS

__all__ = ["make_parser"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default=os.environ.get("DSP_CONFIG"),
        help="the TOML configuration file (default: $DSP_CONFIG; without either, "
        "the configuration comes from DSP_ variables alone)",
    )
    p.add_argument(
        "--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )  # debug, Debug and DEBUG alike
    p.add_argument("--log-format", choices=["auto", "json", "console"])


#: what each command's exit status means (every `--help` ends with its own)
_EXIT_STATUS = {
    "run": "0 stopped cleanly (signal or --stop-when-idle); 1 a shard reader failed during the "
    "run, or a fatal AWS error; 2 bad configuration (nothing was read)",
    "check-config": "0 the configuration is usable; 2 it is not (the line says what and the fix)",
    "replay": "0 done; 1 a runtime failure; 2 bad configuration; 3 some records were dead-lettered",
    "capture": "0 done; 1 a runtime failure; 2 bad configuration",
    "redrive": "0 every letter delivered (or none left); 1 some failed again (they stay, with the "
    "new error); 2 bad configuration",
    "prune": "0 done (or a dry run); 1 some deletes failed (run it again); 2 bad configuration",
}
_DEFAULT_EXIT = (
    "0 done; 1 a runtime failure (AWS unreachable, access denied, ...); 2 bad configuration"
)


def _add(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    *,
    exits: str | None = None,
    **kwargs: str,
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its exit statuses."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        epilog=f"exit status: {exits or _EXIT_STATUS.get(name, _DEFAULT_EXIT)}",
        **kwargs,  # type: ignore[arg-type]
    )
    return parser


def _stop_when_idle(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stop-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit 0 once every owned shard has had no new records for SECONDS",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsp",
        description="Read a DynamoDB Stream and fan every change out to consumers.",
        epilog="exit status: 0 done; 1 a runtime failure; 2 bad configuration (nothing was "
        "read); 3 replay: some records were dead-lettered. `dsp COMMAND --help` says what "
        "each one means for that command.",
    )
    parser.add_argument("--version", action="version", version=f"dsp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _run, _check, _replay, _capture, _status, _dead_letter, _leases, _multilang, _iam,
        _lambda_filters,
    ):  # fmt: skip
        add(sub)
    return parser


def _run(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = _add(sub, "run", help="run the worker until stopped (SIGINT/SIGTERM)")
    _common(run)
    _streams(run)
    _stop_when_idle(run)


def _check(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    check = _add(
        sub,
        "check-config",
        help="validate the configuration as `dsp run` does (stream, routes, consumers) and exit",
    )
    _common(check)
    check.add_argument(
        "--json",
        action="store_true",
        help='one JSON object on stdout: {"ok": true, "summary": ...} or {"ok": false, '
        '"key": ..., "error": ..., "fix": ...}',
    )
    check.add_argument(
        "--offline",
        action="store_true",
        help="without AWS: skip the checks that need it (the stream, key schema, tables)",
    )


def _streams(p: argparse.ArgumentParser) -> None:
    """--stream: with [[streams]], only these (by name)."""
    p.add_argument(
        "--stream",
        action="append",
        metavar="NAME",
        help="with [[streams]]: only this stream (repeatable; default: every stream)",
    )


def _replay(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    replay = _add(
        sub,
        "replay",
        help="deliver a chosen range of the stream (or of archives) again through the routes",
        description=(
            "Reads the range across the shard tree in lineage order, in its own checkpoint "
            "namespace (live checkpoints never move). A time bound works at "
            "ApproximateCreationDateTime's precision, one second: --from includes every record "
            "stamped in that second. Exit status 3 if any record was dead-lettered."
        ),
    )
    _common(replay)
    _streams(replay)
    replay.add_argument(
        "--from",
        dest="start",
        metavar="POSITION",
        help="trim-horizon | SEQUENCE_NUMBER | ISO 8601 time (default with "
        "--from-file: everything)",
    )
    replay.add_argument(
        "--to", dest="end", metavar="POSITION", help="SEQUENCE_NUMBER | ISO 8601 time"
    )
    replay.add_argument(
        "--shard", action="append", metavar="ID", help="only this shard (repeatable)"
    )
    replay.add_argument(
        "--route", action="append", metavar="NAME", help="only this route (repeatable)"
    )
    replay.add_argument(
        "--tenant", action="append", metavar="T", help="only this tenant (repeatable)"
    )
    replay.add_argument("--dry-run", action="store_true", help="count what would be delivered")
    replay.add_argument(
        "--rate", type=float, metavar="RECORDS_PER_S", help="at most this many records/s"
    )
    replay.add_argument("--resume", action="store_true", help="continue an interrupted replay")
    replay.add_argument(
        "--from-file",
        nargs="+",
        metavar="PATH",
        help="replay capture archives (JSONL, .gz) or dead-letter files instead",
    )
    replay.add_argument("--idle-s", type=float, default=2.0, help="end when caught up this long")


def _capture(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    capture = _add(sub, "capture", help="archive raw stream records (JSONL, .gz) past retention")
    _common(capture)
    _streams(capture)
    capture.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="archive name; gzip when it ends in .gz; rotated as NAME-000001...",
    )
    capture.add_argument(
        "--rotate-mb", type=float, default=64.0, help="start a new file past this size"
    )
    capture.add_argument(
        "--stop-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit once caught up and idle this long (default: run until stopped)",
    )


def _status(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    status = _add(sub, "status", help="the lease table: shards, owners, checkpoints, lag")
    _common(status)
    _streams(status)
    status.add_argument(
        "--properties", metavar="FILE", help="a KCL properties file (dsp multilang's)"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")


def _letters_source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        choices=["file", "sqs", "all"],
        default="all",
        help="where the letters are: the file (dead_letter.path), the queue "
        "(dead_letter.sqs_queue_url), or both (default)",
    )
    p.add_argument("--route", action="append", metavar="NAME", help="only this route (repeatable)")


def _dead_letter(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dead = _add(sub, "dead-letter", help="work with dead letters: file and SQS queue")
    dead_sub = dead.add_subparsers(dest="dead_letter_command", required=True)
    redrive = _add(
        dead_sub,
        "redrive",
        help="send dead-lettered records back through their routes; remove what succeeds",
        description="The file first, then the queue. A queue message is deleted only after "
        "its record is delivered; one that fails again is replaced by a message with the new "
        "error. Messages that are not letters stay in the queue and are named. Exit status 1 "
        "if any record failed again.",
    )
    _common(redrive)
    _streams(redrive)
    _letters_source(redrive)
    listing = _add(
        dead_sub,
        "list",
        help="show dead letters without consuming them (queue messages are made visible "
        "again at once)",
    )
    _common(listing)
    _letters_source(listing)
    listing.add_argument("--limit", type=int, metavar="N", help="at most N letters")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    count = _add(dead_sub, "count", help="how many dead letters there are, per place")
    _common(count)
    count.add_argument(
        "--source", choices=["file", "sqs", "all"], default="all", help="where to count"
    )
    count.add_argument("--json", action="store_true", help="one JSON object")


def _lambda_filters(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    filters = _add(
        sub,
        "lambda-filters",
        help="the event source mapping's FilterCriteria, from the routes' filters (JSON)",
        description='Prints {"Filters": [{"Pattern": ...}]} for the mapping when every '
        "route has a filter, so Lambda drops only records no route would act on; otherwise {} "
        "and, on stderr, why.",
    )
    _common(filters)


def _leases(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    leases = _add(sub, "leases", help="work with the lease table")
    leases_sub = leases.add_subparsers(dest="leases_command", required=True)
    kcl = _add(
        leases_sub,
        "import-kcl",
        help="take the checkpoints of a Java KCL application's lease table, so dsp resumes "
        "where the KCL stopped",
        description="Reads every lease of the KCL table (KCL 1.x, 2.x, 3.x, with or without "
        "the DynamoDB Streams adapter) and writes our leases for checkpoints.application: "
        "the checkpoint as it is, SHARD_END as finished, TRIM_HORIZON/LATEST as not started. "
        "Leases dsp already has are kept. Stop the KCL daemon first. Exit status 2 if the "
        "table is not a KCL lease table.",
    )
    _common(kcl)
    _streams(kcl)
    kcl.add_argument("--from-table", required=True, metavar="NAME", help="the KCL lease table")
    kcl.add_argument("--dry-run", action="store_true", help="show what would be written")
    kcl.add_argument(
        "--properties", metavar="FILE", help="a KCL MultiLang properties file, as for multilang"
    )
    prune = _add(
        leases_sub,
        "prune",
        help="delete the leases lineage no longer needs (a table an older version filled)",
        description="Applies the worker's lease cleanup rules (ADR 0024) to the whole table at "
        "once: a finished lease goes once every child started or its shard left the stream; "
        "an unfinished lease of a shard that left the stream is reported and deleted only "
        'with stream.on_trimmed = "skip". A dry run unless --apply. Safe beside running '
        "workers: every delete is conditional on the lease as it was read.",
    )
    _common(prune)
    _streams(prune)
    prune.add_argument("--apply", action="store_true", help="delete (default: only show)")


def _multilang(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    multilang = _add(
        sub,
        "multilang",
        help="run unchanged amazon_kclpy record processors (KCL MultiLang), one child per shard",
        description="Reads a KCL MultiLang properties file (executableName, applicationName, "
        "streamArn or tableName, ...) and drives one child process per owned shard with the "
        "MultiLang protocol, instead of routes. --config adds our TOML (metrics port, "
        "[multilang] options...); DSP_ variables override both.",
    )
    _common(multilang)
    multilang.add_argument(
        "--properties", metavar="FILE", help="the KCL .properties file (optional with --config)"
    )
    _stop_when_idle(multilang)


def _iam(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    iam = _add(
        sub,
        "iam-policy",
        help="print the least-privilege IAM policy for what this configuration uses",
        description="Actions and resource ARNs for exactly the features the configuration "
        "turns on (stream, leases, batch_write targets, subscriptions tables, SQS dead "
        "letters). Your own consumers' and transforms' AWS calls are listed as notes.",
    )
    _common(iam)
    iam.add_argument(
        "--account",
        metavar="ID",
        help="the 12-digit account id (default: from stream.arn or the SQS queue URL)",
    )
    iam.add_argument(
        "--commands",
        default=",".join(COMMANDS),
        help=f"the dsp commands the role runs (default: all of {','.join(COMMANDS)})",
    )
    iam.add_argument(
        "--json",
        action="store_true",
        help='{"policy": ..., "notes": [...]} on stdout (the notes are otherwise on stderr)',
    )
    iam.add_argument(
        "--no-create-table",
        action="store_true",
        help="the lease table exists: leave dynamodb:CreateTable out",
    )
