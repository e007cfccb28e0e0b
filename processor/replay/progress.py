"""Replay progress: a live line on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

import structlog

__all__ = ["Progress"]

log = structlog.get_logger()


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Reports ``worker.state()``: records, records/s, shards, position, ETA when known."""

    def __init__(
        self,
        worker: Any,
        *,
        start_time: float | None,
        end_time: float | None,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        every_s: float | None = None,
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
        self.lines: list[str] = []

    def line(self) -> str:
        state = self._worker.state()
        elapsed = max(time.monotonic() - self._started, 1e-6)
        records = state["records_read"]
        rate = records / elapsed
        shards = state["shards"]
        finished = self._worker.summary.shards_finished
        positions = [s["position_time"] for s in shards if s.get("position_time") is not None]
        position = min(positions) if positions else None
        parts = [
            f"replay {records:,} records",
            f"{rate:,.0f} rec/s",
            f"shards {len(shards)} reading, {finished} done",
        ]
        if position is not None:
            parts.append(f"at {datetime.fromtimestamp(position, tz=UTC):%Y-%m-%dT%H:%M:%SZ}")
        if position is not None and self._start_time is not None and self._end_time is not None:
            span = max(self._end_time - self._start_time, 1.0)
            done = min(max((position - self._start_time) / span, 0.0), 1.0)
            eta = _clock(elapsed * (1 - done) / done) if done > 0 else "?"
            bar = "#" * int(done * 20)
            parts.append(f"[{bar:<20}] {done:4.0%} ETA {eta}")
        for shard in shards[:3]:
            parts.append(f"{shard['shard_id'][-12:]}@{(shard['checkpoint'] or '-')[-8:]}")
        return "  ".join(parts)

    def _emit(self, final: bool = False) -> None:
        text = self.line()
        self.lines.append(text)
        if self._tty:
            self._stream.write("\r\033[K" + text + ("\n" if final else ""))
            self._stream.flush()
        else:
            log.info("replay_progress", progress=text)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self._emit()

    def start(self) -> Progress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._emit(final=True)
