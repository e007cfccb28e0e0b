"""batch_write at DynamoDB's write capacity (processor.testing.CapacityProxy in front of the
moto server): nothing lost, versioned writes keep each key's order, and the writer learns the
table's rate once per congestion event.

The model's clock is the consumer's sleep: time passes only when the writer waits, so the
tests never sleep for real and what the writer is granted depends only on how it paces.
botocore does not retry here (max_attempts=1): every throttle reaches the writer."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest

from consumers.batch_write import build
from processor.aws import make_clients
from processor.core.records import StreamRecord
from processor.testing import (
    CapacityModel,
    CapacityProxy,
    create_table,
    item_wcu,
    make_record,
    scan_all,
)

from .helpers import context


class FakeTime:
    """A clock that moves when the writer sleeps (its threads share it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
            self.slept += seconds


def writer(proxy: CapacityProxy, clock: FakeTime, options: dict[str, Any]) -> Any:
    ctx = context(endpoint=proxy.endpoint)
    ctx = dataclasses.replace(
        ctx,
        clients=make_clients(
            region="us-east-1",
            endpoint_url=proxy.endpoint,
            retry_mode="standard",
            max_attempts=1,
            pool_size=8,
        ),
        sleep=clock.sleep,
        clock=clock,
    )
    consumer = build({"max_attempts": 100, **options}, ctx)
    return consumer, ctx


def write_all(consumer: Any, records: list[StreamRecord]) -> None:
    """``records`` in batches of 100, as the worker delivers them, each handled whole; then
    the consumer is closed."""
    for start in range(0, len(records), 100):
        assert consumer(records[start : start + 100]) is None
    consumer.close()


def orders(n: int, *, hot_share: float = 0.0) -> list[StreamRecord]:
    out = []
    for i in range(n):
        pk = "HOT" if hot_share and i % int(1 / hot_share) == 0 else f"t{i}"
        keys = {"pk": {"S": pk}, "sk": {"S": f"{i:05d}"}}
        out.append(make_record(keys, new_image={**keys, "v": {"N": str(i)}}))
    return out


@pytest.mark.moto_only(reason="the capacity proxy forwards to the suite's moto server")
@pytest.mark.parametrize("hot_share", [0.0, 0.3])
def test_nothing_is_lost_at_the_tables_capacity(
    endpoint: str, dynamodb: Any, unique: str, hot_share: float
) -> None:
    """A 100 WCU/s table with its burst spent and 4 partitions of 40 WCU/s: every item
    lands exactly once, whether the keys are uniform or one key takes 30 % of the writes."""
    table = f"capacity-{unique}"
    create_table(dynamodb, table, stream_view=None)
    clock = FakeTime()
    model = CapacityModel(
        wcu_per_s=100, partitions=4, partition_wcu_per_s=40, burst_credit=0, clock=clock
    )
    with CapacityProxy(endpoint, model) as proxy:
        consumer, ctx = writer(proxy, clock, {"table": table})
        records = orders(600, hot_share=hot_share)
        write_all(consumer, records)
        stats = proxy.stats
        written = [(i["pk"]["S"], i["sk"]["S"]) for i in proxy.written]
    assert stats["throttled_calls"] + stats["items_unprocessed"] > 0  # the model pushed back
    assert len(written) == len(set(written)) == 600  # each item written once
    assert len(scan_all(dynamodb, table)) == 600
    assert ctx.stats["consumed_capacity_units"] == sum(item_wcu(i) for i in proxy.written)
    # the table could not have taken it faster than its rate: the writer waited for it
    assert clock.slept >= (600 - 40 * 4) / 100 * 0.9


@pytest.mark.moto_only(reason="the capacity proxy forwards to the suite's moto server")
def test_versioned_writes_keep_each_keys_order_under_throttling(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Six versions of each of 8 keys, a batch per version: the conditional writes are
    throttled, retried, and reach the table in version order per key; each ends newest."""
    table = f"capacity-versioned-{unique}"
    create_table(dynamodb, table, stream_view=None)
    clock = FakeTime()
    model = CapacityModel(wcu_per_s=10, partitions=2, partition_wcu_per_s=8, clock=clock)
    with CapacityProxy(endpoint, model) as proxy:
        consumer, _ = writer(proxy, clock, {"table": table, "versioned": True})
        for version in range(1, 7):
            batch = []
            for k in range(8):
                keys = {"pk": {"S": f"k{k}"}, "sk": {"S": "item"}}
                image = {**keys, "version": {"N": str(version)}}
                seq = str(100000000000000000000 + version * 100 + k)
                batch.append(
                    make_record(keys, event_name="MODIFY", new_image=image, sequence_number=seq)
                )
            assert consumer(batch) is None
        consumer.close()
        throttled = proxy.stats["throttled_calls"]
        order: dict[str, list[int]] = {}
        for item in proxy.written:
            order.setdefault(item["pk"]["S"], []).append(int(item["version"]["N"]))
    assert throttled > 0
    assert all(versions == [1, 2, 3, 4, 5, 6] for versions in order.values()), order
    stored = {i["pk"]["S"]: int(i["version"]["N"]) for i in scan_all(dynamodb, table)}
    assert stored == {f"k{k}": 6 for k in range(8)}


@pytest.mark.moto_only(reason="the capacity proxy forwards to the suite's moto server")
@pytest.mark.parametrize("concurrency", [1, 4])
def test_calls_stay_full_while_a_batch_has_writes_not_sent(
    endpoint: str, dynamodb: Any, unique: str, concurrency: int
) -> None:
    """Every slot stays busy (issue 19): what a call leaves unprocessed goes back to the one
    queue all slots take from (behind the writes not sent yet, so a hot partition's leftovers
    do not make every following call partial), instead of one slot resending a few items
    alone while it backs off. So a call carries fewer than 25 items only once its batch has
    nothing left to send. Nothing is lost or written twice."""
    table = f"capacity-queue-{unique}"
    create_table(dynamodb, table, stream_view=None)
    clock = FakeTime()
    # the hot key's partition takes 10 WCU/s: most calls fit only partly
    model = CapacityModel(
        wcu_per_s=100, partitions=4, partition_wcu_per_s=10, burst_credit=0, clock=clock
    )
    with CapacityProxy(endpoint, model) as proxy:
        consumer, _ = writer(proxy, clock, {"table": table, "concurrency": concurrency})
        records = orders(1000, hot_share=0.3)
        for start in range(0, len(records), 500):
            assert consumer(records[start : start + 500]) is None
        consumer.close()
        calls = [[(i["pk"]["S"], i["sk"]["S"]) for i in call] for call in proxy.batch_calls]
        written = [(i["pk"]["S"], i["sk"]["S"]) for i in proxy.written]
    batches = [
        {(r.wire_keys["pk"]["S"], r.wire_keys["sk"]["S"]) for r in records[s : s + 500]}
        for s in (0, 500)
    ]
    assert proxy.stats["items_unprocessed"] > 0  # the model pushed back
    sent: set[tuple[str, str]] = set()
    short = 0
    for call in calls:
        sent.update(call)
        if len(call) < 25:
            short += 1
            (batch,) = [b for b in batches if call[0] in b]
            assert batch <= sent, f"a call of {len(call)} items while its batch had writes unsent"
    assert len(written) == len(set(written)) == 1000


@pytest.mark.moto_only(reason="the capacity proxy forwards to the suite's moto server")
def test_a_table_without_burst_credit_is_kept_near_its_capacity(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """A table that banks 0.1 s of capacity absorbs none of a pacer's overshoots: each
    throttling cuts the rate to just under what the table took, not to half (issue 32), so
    the table is written at nearly its rate. The clock moves only when the writer waits, so
    the figure depends on the pacing alone (one slot: no two waits overlap)."""
    table = f"capacity-noburst-{unique}"
    create_table(dynamodb, table, stream_view=None)
    clock = FakeTime()
    model = CapacityModel(
        wcu_per_s=400, burst_s=0.1, partitions=1, partition_wcu_per_s=4000, clock=clock
    )
    with CapacityProxy(endpoint, model) as proxy:
        consumer, _ = writer(proxy, clock, {"table": table, "concurrency": 1})
        records = orders(4000)
        started = clock()
        write_all(consumer, records)
        granted = 400 * (clock() - started) + 400 * 0.1
        used = proxy.stats["wcu_written"] / granted
        throttled = proxy.stats["throttled_calls"] + proxy.stats["items_unprocessed"]
    assert throttled > 0  # the model pushed back
    assert used >= 0.9, f"the writer used {used:.0%} of the capacity ({proxy.stats}, {clock.slept})"
    assert len(scan_all(dynamodb, table)) == 4000
