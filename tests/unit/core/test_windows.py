"""Tumbling windows (issue 33, item 1): state threaded from call to call within a window, a
final call per window and shard, the state stored with the checkpoint, the shard's end."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from processor import aws_lambda
from processor.core.consumer import RouteStats
from processor.core.dead_letters import DeadLetter
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.core.windows import MAX_STATE_BYTES, TumblingWindows, Window
from processor.errors import ConfigError
from processor.runtime.reader import ReaderSettings
from processor.runtime.worker import Worker, WorkerSettings
from processor.settings import load_settings
from processor.sources.lineage import Shard
from processor.testing import MemoryLeaseStore, make_record
from tests.unit.leases.test_worker import ARN, FakeStreams

T0 = 1_800_000_000.0  # a minute boundary: T0 % 60 == 0


def rec(key: str, seq: int, at: float, shard: str = "s1") -> StreamRecord:
    return make_record(
        {"pk": {"S": key}}, sequence_number=str(seq), created=at, event_id=f"e{seq}",
        shard_id=shard,
    )  # fmt: skip


class Counting:
    """A window consumer counting records per key; final calls are its emissions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.emitted: dict[tuple[str | None, float], dict[str, int]] = {}
        self.calls: list[Window] = []

    def __call__(self, records: Sequence[StreamRecord], window: Window) -> dict[str, Any]:
        state = dict(window.state)
        for record in records:
            key = record.keys["pk"]
            state[key] = state.get(key, 0) + 1
        with self.lock:
            self.calls.append(window)
            if window.is_final:  # idempotent: one key per window and shard
                self.emitted[(window.shard_id, window.start)] = state
        return {} if window.is_final else state


def run_windows(batches: list[list[StreamRecord]], size: int = 60) -> Counting:
    consumer = Counting()
    windows = TumblingWindows(
        {"w": size}, lambda route, records, window: consumer(records, window), clock=lambda: T0
    )
    windows.load(None, "s1")
    for batch in batches:
        windows.deliver("w", batch)
    windows.close_all()
    return consumer


def test_counts_per_key_per_window_are_exact_over_many_batches() -> None:
    records = [rec(f"k{i % 3}", i, T0 + i * 7) for i in range(40)]  # 280 s: 5 windows
    expected: dict[float, Counter[str]] = {}
    for r in records:
        start = T0 + (r.approximate_creation_time.timestamp() - T0) // 60 * 60  # type: ignore[union-attr]
        expected.setdefault(start, Counter())[r.keys["pk"]] += 1
    for size in (1, 3, 7, 40):
        batches = [records[i : i + size] for i in range(0, len(records), size)]
        consumer = run_windows(batches)
        assert {start: Counter(s) for (_, start), s in consumer.emitted.items()} == expected
        finals = [w for w in consumer.calls if w.is_final]
        assert len(finals) == len(expected)  # one final call per window
        assert finals[-1].is_shard_end  # the open window closed with the shard


def test_a_window_with_no_records_is_never_called_and_windows_are_epoch_aligned() -> None:
    consumer = run_windows([[rec("a", 1, T0 + 5)], [rec("a", 2, T0 + 185)]])
    assert sorted(start - T0 for (_, start) in consumer.emitted) == [0, 180]
    assert all(w.end - w.start == 60 for w in consumer.calls)


def test_a_late_record_counts_in_the_next_open_window() -> None:
    now = [T0 + 100.0]
    consumer = Counting()
    windows = TumblingWindows(
        {"w": 60}, lambda route, records, window: consumer(records, window), clock=lambda: now[0]
    )
    windows.load(None, "s1")
    windows.deliver("w", [rec("a", 1, T0 + 10)])
    assert windows.close_due()  # caught up, and the window ended more than 2 s ago
    windows.deliver("w", [rec("a", 2, T0 + 59)])  # created in the closed window
    windows.close_all()
    assert consumer.emitted == {("s1", T0): {"a": 1}, ("s1", T0 + 60): {"a": 1}}


def test_the_state_survives_a_restart_through_the_checkpoints_blob() -> None:
    first = Counting()
    windows = TumblingWindows({"w": 60}, lambda r, recs, w: first(recs, w), clock=lambda: T0)
    windows.load(None, "s1")
    windows.deliver("w", [rec("a", 1, T0 + 1), rec("b", 2, T0 + 2)])
    blob = windows.dump()
    again = Counting()  # another process: only the blob carries over
    resumed = TumblingWindows({"w": 60}, lambda r, recs, w: again(recs, w), clock=lambda: T0)
    resumed.load(blob, "s1")
    resumed.deliver("w", [rec("a", 3, T0 + 3), rec("a", 4, T0 + 61)])
    assert again.emitted == {("s1", T0): {"a": 2, "b": 1}}


# -- through the worker ------------------------------------------------------------------------


def raw(key: str, seq: int, at: float) -> dict[str, Any]:
    return rec(key, seq, at).raw


def worker_for(streams: FakeStreams, store: MemoryLeaseStore, consumer: Any) -> Worker:
    stats = {"w": RouteStats()}

    class Sink:
        def send(self, entries: Sequence[DeadLetter]) -> None:
            letters.extend(entries)

    def dispatcher_for(stop: threading.Event) -> Dispatcher:
        return Dispatcher(
            [Route("w", consumer, window_s=60)],
            Sink(),
            RetryPolicy(max_retries=1, base_delay_s=0.001, max_delay_s=0.002),
            stats=stats,
            stop=stop,
        )

    return Worker(
        adapter=streams,
        stream_arn=ARN,
        store=store,
        dispatcher_for=dispatcher_for,
        settings=WorkerSettings(
            owner="w1",
            tick_s=0.01,
            lease_scan_interval_s=0.02,
            reader=ReaderSettings(
                get_records_limit=4,
                max_records=3,
                poll_interval_min_s=0.01,
                poll_interval_max_s=0.02,
            ),
        ),
    )


letters: list[DeadLetter] = []


def test_across_a_rollover_the_parent_closes_its_window_and_the_child_starts_fresh() -> None:
    """Windows are per shard: the parent's open window closes at its end (is_shard_end);
    per-shard aggregates of one window add up to the window's count."""
    parent = [raw(f"k{i % 2}", i, T0 + i * 5) for i in range(1, 16)]  # up to T0 + 75
    child = [raw(f"k{i % 2}", 100 + i, T0 + 80 + i * 5) for i in range(12)]  # T0+80..T0+135
    streams = FakeStreams(
        {
            "p": (Shard("p", None, "1", "15"), parent),
            "c": (Shard("c", "p", "100", "111"), child),
        }
    )
    consumer = Counting()
    worker_for(streams, MemoryLeaseStore(), consumer).run(
        stop=threading.Event(), stop_when_idle=0.3
    )
    per_window: dict[float, Counter[str]] = {}
    for (_, start), state in consumer.emitted.items():
        per_window.setdefault(start, Counter()).update(state)
    expected: dict[float, Counter[str]] = {}
    for item in parent + child:
        created = item["dynamodb"]["ApproximateCreationDateTime"]
        key = item["dynamodb"]["Keys"]["pk"]["S"]
        expected.setdefault(T0 + (created - T0) // 60 * 60, Counter())[key] += 1
    assert per_window == expected
    # the window [T0+60, T0+120) has records in both shards: two emissions, each final
    assert ("p", T0 + 60) in consumer.emitted
    assert ("c", T0 + 60) in consumer.emitted
    parent_end = [w for w in consumer.calls if w.shard_id == "p" and w.is_shard_end]
    assert len(parent_end) == 1


def test_the_state_is_written_with_the_checkpoint() -> None:
    streams = FakeStreams(
        {"s": (Shard("s", None, "1", None), [raw("a", i, T0 + i) for i in range(1, 6)])}
    )
    store = MemoryLeaseStore()
    worker_for(streams, store, Counting()).run(stop=threading.Event(), stop_when_idle=0.3)
    lease = store.leases["s"]
    assert lease.checkpoint == "5"
    windows = TumblingWindows({"w": 60}, lambda *a: {}, clock=lambda: T0)
    windows.load(lease.window_state, "s")
    assert json.loads(json.dumps(windows._open["w"].state)) == {"a": 5}


def test_a_state_over_the_limit_dead_letters_the_call_naming_the_route() -> None:
    letters.clear()

    def hoarder(records: Sequence[StreamRecord], window: Window) -> dict[str, Any]:
        return {"records": "x" * (MAX_STATE_BYTES + 1)}

    streams = FakeStreams({"s": (Shard("s", None, "1", None), [raw("a", 1, T0 + 1)])})
    worker_for(streams, MemoryLeaseStore(), hoarder).run(stop=threading.Event(), stop_when_idle=0.3)
    (letter,) = letters
    assert letter.route == "w"
    assert letter.error_type == "RecordError"
    assert "route w: the window state is" in letter.error_message
    assert "over the 1,048,576 limit" in letter.error_message


def test_windows_are_for_your_functions_and_not_for_lambda(tmp_path: Path) -> None:
    config = tmp_path / "dsp.toml"
    base = '[stream]\ntable = "orders"\n[checkpoints]\napplication = "x"\n[[routes]]\nname = "w"\n'
    config.write_text(base + 'consumer = "cache"\ntumbling_window_s = 60\n')
    with pytest.raises(ConfigError, match="tumbling_window_s takes your window function"):
        load_settings(config, environ={})
    config.write_text(base + 'consumer = "m:f"\ntumbling_window_s = 901\n')
    with pytest.raises(ConfigError, match="tumbling_window_s"):
        load_settings(config, environ={})


def test_lambda_refuses_windows_and_names_the_mappings_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "lambda.toml"
    config.write_text(
        f'[dead_letter]\npath = "{tmp_path / "dl.jsonl"}"\nlambda_tmp = true\n[[routes]]\n'
        'name = "w"\nconsumer = "tests.unit.core.test_windows:Counting"\ntumbling_window_s = 60\n'
    )
    monkeypatch.setenv("DSP_CONFIG", str(config))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    aws_lambda.reset()
    event = {"Records": [dict(rec("a", 1, T0).raw, eventSource="aws:dynamodb")]}
    try:
        with pytest.raises(ConfigError, match="TumblingWindowInSeconds"):
            aws_lambda.handler(event, None)
    finally:
        aws_lambda.reset()
