"""Replay progress: a live bar on a terminal (``rich``: it fits the terminal's width and
redraws in place), structured log lines otherwise. Nothing accumulates: only the figures of
the last look are kept."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import structlog
from rich.console import Console
from rich.progress import BarColumn, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.table import Column

__all__ = ["Progress", "Snapshot"]

#: "replay", the bar, the percentage, the ETA and the spaces between the columns
_FIXED_WIDTH = 6 + 20 + 4 + 7 + 5

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Snapshot:
    records: int
    rate: float  # records per second since the start
    reading: int  # shards being read now
    done: int  # shards finished
    position: float | None  # the oldest creation time handled among the shards being read
    fraction: float | None  # of the time range, when both ends are times

    def detail(self) -> str:
        """The short text beside the bar (or the whole log line's figures)."""
        parts = [f"{self.records:,} rec", f"{self.rate:,.0f}/s", f"{self.reading} reading"]
        parts.append(f"{self.done} done")
        if self.position is not None:
            parts.append(f"at {datetime.fromtimestamp(self.position, tz=UTC):%Y-%m-%dT%H:%M:%SZ}")
        return " · ".join(parts)


class Progress:
    """Reports ``worker.state()``: records, records/s, shards, position, and the share of the
    range done (with an ETA) when both ends of the range are times."""

    def __init__(
        self,
        worker: Any,
        *,
        start_time: float | None,
        end_time: float | None,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        every_s: float | None = None,
        width: int | None = None,
    ) -> None:
        self._worker = worker
        self._start_time = start_time
        self._end_time = end_time
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._every = every_s if every_s is not None else (0.5 if self._tty else 5.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="dsp-progress")
        self._started = time.monotonic()
        self.last: Snapshot | None = None
        self._bar: Bar | None = None
        self._task: TaskID | None = None
        self._room = 0  # characters left for the figures beside the bar
        if self._tty:
            console = Console(file=self._stream, force_terminal=True, width=width)
            self._room = max(console.width - _FIXED_WIDTH, 12)
            self._bar = Bar(  # only the figures give way on a narrow terminal
                TextColumn("replay", table_column=Column(min_width=6, no_wrap=True)),
                BarColumn(bar_width=20, table_column=Column(min_width=20, no_wrap=True)),
                TaskProgressColumn(table_column=Column(min_width=4, no_wrap=True)),
                TimeRemainingColumn(table_column=Column(min_width=7, no_wrap=True)),
                TextColumn(
                    "{task.fields[detail]}", table_column=Column(no_wrap=True, overflow="ellipsis")
                ),
                console=console,
                auto_refresh=False,
            )
            bounded = start_time is not None and end_time is not None
            self._task = self._bar.add_task("replay", total=1.0 if bounded else None, detail="")

    def snapshot(self) -> Snapshot:
        state = self._worker.state()
        elapsed = max(time.monotonic() - self._started, 1e-6)
        shards = state["shards"]
        positions = [s["position_time"] for s in shards if s.get("position_time") is not None]
        position = min(positions) if positions else None
        fraction = None
        if position is not None and self._start_time is not None and self._end_time is not None:
            span = max(self._end_time - self._start_time, 1.0)
            fraction = min(max((position - self._start_time) / span, 0.0), 1.0)
        return Snapshot(
            records=state["records_read"],
            rate=state["records_read"] / elapsed,
            reading=len(shards),
            done=self._worker.summary.shards_finished,
            position=position,
            fraction=fraction,
        )

    def _emit(self, final: bool = False) -> None:
        snap = self.last = self.snapshot()
        if self._bar is not None and self._task is not None:
            detail = snap.detail()
            if len(detail) > self._room:  # the figures give way; the bar and ETA stay whole
                detail = detail[: self._room - 1] + "…"
            self._bar.update(self._task, completed=snap.fraction or 0.0, detail=detail)
            self._bar.refresh()
            return
        log.info(
            "replay_progress",
            records=snap.records,
            records_per_s=round(snap.rate, 1),
            shards_reading=snap.reading,
            shards_done=snap.done,
            position=(
                datetime.fromtimestamp(snap.position, tz=UTC).isoformat()
                if snap.position is not None
                else None
            ),
            done_pct=round(100 * snap.fraction, 1) if snap.fraction is not None else None,
            final=final,
        )

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self._emit()

    def start(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._emit(final=True)
        if self._bar is not None:
            self._bar.stop()
