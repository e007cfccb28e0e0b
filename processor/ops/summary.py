"""The table `dsp run --stop-when-idle`, `dsp replay` and the demo print: per route, what the
engine did and what the consumer reports."""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from processor.core.consumer import (
    RouteStats,
)
from processor.ops.text_table import render
from processor.settings import Settings

__all__ = ["stats_table"]

log = structlog.get_logger()


_ENGINE_COUNTERS = ("delivered", "filtered", "dead_lettered", "retries")


_HIDDEN = frozenset({"calls", "bisections", *_ENGINE_COUNTERS})


def stats_table(settings: Settings, stats: Mapping[str, RouteStats]) -> str:
    """A plain-text table of what each route did (the demo and `dsp run --stop-when-idle`)."""
    header = ["route", "consumer", *(c.replace("_", "-") for c in _ENGINE_COUNTERS), "consumer did"]
    lines = [header]
    for route in settings.routes:
        snap = stats[route.name].snapshot()
        did = ", ".join(
            f"{k.replace('_', ' ')}: {v}" for k, v in sorted(snap.items()) if k not in _HIDDEN
        )
        lines.append(
            [
                route.name,
                route.consumer,
                *(str(snap.get(c, 0)) for c in _ENGINE_COUNTERS),
                did or "-",
            ]
        )
    return render(lines[0], lines[1:])
