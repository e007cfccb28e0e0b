"""A slow consumer (I/O-bound: 2 ms per record) over 400 records of 50 keys, one batch:
parallelism=8 vs parallelism=1, wall-clock records/s."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from processor.core.consumer import RouteStats
from processor.core.dead_letters import DeadLetter
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.testing import make_record

RECORDS = [make_record({"pk": {"S": f"k{i % 50}"}}) for i in range(400)]


class _Sink:
    def send(self, entries: Sequence[DeadLetter]) -> None:
        raise AssertionError("nothing fails here")


def _slow(records: Sequence[StreamRecord]) -> None:
    time.sleep(0.002 * len(records))


def dispatch_with(parallelism: int) -> Callable[[], int]:
    def run() -> int:
        d = Dispatcher(
            [Route("slow", _slow)],
            _Sink(),
            RetryPolicy(parallelism=parallelism),
            stats={"slow": RouteStats()},
            stop=threading.Event(),
        )
        d.dispatch(RECORDS)
        d.close()
        return len(RECORDS)

    return run
