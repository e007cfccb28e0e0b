"""`dsp status`: the lease table as a table (or JSON), readable while workers run."""

from __future__ import annotations

import json
from collections.abc import Sequence, Set
from datetime import UTC, datetime
from typing import Any

from processor.leases.model import Lease
from processor.ops.text_table import render

__all__ = ["render_json", "render_table", "status_rows"]


def status_rows(
    leases: Sequence[Lease], *, now: float, listed: Set[str] | None = None
) -> list[dict[str, Any]]:
    """One row per shard, parents before children (shard ids sort in creation order);
    ``listed``: the shards the stream lists now, when known (an unfinished lease whose shard
    is not among them lost records to the retention: ``trimmed_unread``)."""
    rows = []
    for lease in sorted(leases, key=lambda item: item.shard_id):
        rows.append(
            {
                "shard_id": lease.shard_id,
                "parent_shard_id": lease.parent_shard_id,
                "owner": lease.owner,
                "checkpoint": lease.checkpoint,
                "finished": lease.finished,
                "last_heartbeat": datetime.fromtimestamp(lease.heartbeat, tz=UTC).isoformat()
                if lease.heartbeat
                else None,
                "heartbeat_age_s": round(now - lease.heartbeat, 1) if lease.heartbeat else None,
                "approximate_lag_s": None if lease.finished or lease.owner is None else lease.lag_s,
                # the owner's reader keeps failing: runs in a row and the last error
                "failures": lease.failures,
                "last_error": lease.last_error,
                "trimmed_unread": (
                    None if listed is None else not lease.finished and lease.shard_id not in listed
                ),
            }
        )
    return rows


def _totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    lags = [r["approximate_lag_s"] for r in rows if r["approximate_lag_s"] is not None]
    return {
        "shards": len(rows),
        "owned": sum(1 for r in rows if r["owner"] and not r["finished"]),
        "unowned": sum(1 for r in rows if not r["owner"] and not r["finished"]),
        "finished": sum(1 for r in rows if r["finished"]),
        "owners": len({r["owner"] for r in rows if r["owner"]}),
        "max_lag_s": max(lags) if lags else None,
        "failing": sum(1 for r in rows if r["last_error"]),
        "trimmed_unread": sum(1 for r in rows if r["trimmed_unread"]),
    }


def render_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps({"shards": list(rows), "totals": _totals(rows)}, indent=2)


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    header = [
        "shard",
        "parent",
        "owner",
        "checkpoint",
        "finished",
        "heartbeat age",
        "lag",
        "failing",
    ]
    lines = [header]
    for r in rows:
        lines.append(
            [
                r["shard_id"],
                r["parent_shard_id"] or "-",
                r["owner"] or "-",
                r["checkpoint"] or "-",
                "yes" if r["finished"] else "no",
                f"{r['heartbeat_age_s']:.1f} s" if r["heartbeat_age_s"] is not None else "-",
                f"{r['approximate_lag_s']:.1f} s" if r["approximate_lag_s"] is not None else "-",
                f"{r['failures']}x" if r["last_error"] else "-",
            ]
        )
    out = render(header, lines[1:]).split("\n")
    t = _totals(rows)
    lag = f"{t['max_lag_s']:.1f} s" if t["max_lag_s"] is not None else "-"
    out.append(
        f"\n{t['shards']} shards: {t['owned']} owned by {t['owners']} worker(s), "
        f"{t['unowned']} unowned, {t['finished']} finished; max lag {lag}"
    )
    for r in rows:
        if r["trimmed_unread"]:
            out.append(
                f"trimmed unread: {r['shard_id']} left the stream (past its retention) before "
                f"it was read to the end (checkpoint {r['checkpoint'] or 'none'}): its later "
                "records are lost; stream.on_trimmed decides whether its children go on"
            )
    for r in rows:  # the whole error, one line per failing shard
        if r["last_error"]:
            out.append(
                f"failing: {r['shard_id']} ({r['failures']} runs in a row, owner {r['owner']}): "
                f"{r['last_error']}"
            )
    return "\n".join(out)
