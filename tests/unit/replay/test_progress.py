"""The replay progress bar (issue 31, item 7): fits the terminal, redraws in place, log lines
when stderr is not a terminal, and keeps nothing but its last look."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs

from processor.replay.progress import Progress

START, END = 1_800_000_000.0, 1_800_003_600.0  # a one-hour range
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Worker:
    def __init__(self) -> None:
        self.records = 0
        self.position = START
        self.summary = SimpleNamespace(shards_finished=0)

    def state(self) -> dict[str, Any]:
        long_id = "shardId-00000001800000000000-0123456789abcdef"
        return {
            "records_read": self.records,
            "shards": [
                {
                    "shard_id": f"{long_id}{i}",
                    "position_time": self.position,
                    "checkpoint": "9" * 40,
                }
                for i in range(40)  # many shards: the old line grew with them
            ],
        }


def visible_lines(text: str) -> list[str]:
    screen = ANSI.sub("", text).replace("\r", "\n")
    return [line for line in screen.split("\n") if line.strip()]


@pytest.mark.parametrize("width", [80, 120])
def test_on_a_terminal_every_line_fits_the_width(width: int) -> None:
    worker, out = Worker(), io.StringIO()
    progress = Progress(worker, start_time=START, end_time=END, stream=out, tty=True, width=width)
    progress.start()
    for step in range(1, 5):
        worker.records = step * 250_000
        worker.position = START + step * 600
        progress._emit()
    worker.summary.shards_finished = 3
    progress.stop()
    lines = visible_lines(out.getvalue())
    assert lines
    assert max(len(line) for line in lines) <= width, lines
    assert "\x1b[" in out.getvalue()  # redrawn in place, not appended
    last = lines[-1]
    assert last.startswith("replay")
    assert "67%" in last  # 40 of 60 minutes
    assert progress.last is not None
    assert progress.last.records == 1_000_000


def test_an_open_ended_replay_shows_figures_without_a_percentage() -> None:
    worker, out = Worker(), io.StringIO()
    progress = Progress(worker, start_time=START, end_time=None, stream=out, tty=True, width=100)
    progress.start()
    worker.records = 1234
    progress.stop()
    last = visible_lines(out.getvalue())[-1]
    assert "1,234 rec" in last
    assert "%" not in last


def test_without_a_terminal_it_logs_figures_and_writes_nothing_to_the_stream() -> None:
    worker, out = Worker(), io.StringIO()
    progress = Progress(worker, start_time=START, end_time=END, stream=out, tty=False)
    with capture_logs() as logs:
        progress.start()
        worker.records, worker.position = 500, START + 1800
        progress.stop()
    assert out.getvalue() == ""
    (final,) = [e for e in logs if e["event"] == "replay_progress" and e["final"]]
    assert final["records"] == 500
    assert final["done_pct"] == 50.0
    assert final["shards_reading"] == 40


def test_it_keeps_only_its_last_look() -> None:
    worker, out = Worker(), io.StringIO()
    progress = Progress(worker, start_time=START, end_time=END, stream=out, tty=False)
    with capture_logs():
        for step in range(1000):
            worker.records = step
            progress._emit()
    kept = [v for v in vars(progress).values() if isinstance(v, list | dict | set)]
    assert kept == []
    assert progress.last is not None
    assert progress.last.records == 999
