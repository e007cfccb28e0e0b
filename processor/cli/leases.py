"""`dsp status`, `dsp leases prune` and `dsp leases import-kcl`: the lease table, stream by
stream."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import structlog

from processor.app import stream_arn_for, stream_source
from processor.aws import AwsClients, clients_for
from processor.errors import ConfigError, ProcessorError
from processor.leases.cleanup import plan_cleanup
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.leases.kcl_import import describe, read_kcl_leases, to_lease
from processor.ops.status import render_json, render_table, status_rows
from processor.settings import Settings, StreamSettings
from processor.settings.sections import DEFAULT_STREAM

__all__ = ["import_kcl", "prune", "status"]

log = structlog.get_logger()

EXIT_OK = 0
EXIT_FAILURE = 1


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


def status(args: argparse.Namespace, settings: Settings) -> int:
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


def prune(args: argparse.Namespace, settings: Settings) -> int:
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


def import_kcl(settings: Settings, table: str, *, dry_run: bool = False) -> int:
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
