"""Batch writes against DynamoDB's write capacity (processor.testing.CapacityProxy in front of
the moto server): ours beside boto3's ``Table.batch_writer()`` with botocore's ``standard``
and ``adaptive`` retry modes, in one run.

The model is scaled down so the writer, not moto, is what is measured: a 400 WCU/s table of
4 partitions capped at 150 WCU/s each (DynamoDB: 1,000 per partition; the proportions, not
the figures, matter), items under 1 KB (1 WCU each). "Used" is the WCU written over what
the model could grant during the run: its rate times the run's length plus banked credit,
or less where the busiest partition's cap is the bound (see ``granted``).

moto runs in a process of its own (``processor.testing.moto_process``), as DynamoDB is never
in the writer's: hosted in the writer's interpreter, its work on each call and its heap's
collections held the writer off the GIL, and a table that banks 0.1 s loses what a stall
longer than that leaves unused (the no-burst minimums of issue 32)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config

from consumers.batch_write import build
from processor.aws import make_clients
from processor.core.consumer import ConsumerContext, StreamInfo
from processor.testing import (
    CapacityModel,
    CapacityProxy,
    create_table,
    make_record,
    scan_all,
)

ITEMS = 2400
TABLE_WCU = 400.0
PARTITIONS = 4
PARTITION_WCU = 150.0


@dataclass(frozen=True)
class Scenario:
    name: str
    hot_share: float = 0.0  # of the writes that go to one key
    burst_credit_s: float = 0.0  # banked credit at the start, in seconds of capacity
    drop_to: float | None = None  # the table's rate after a third of the items' time
    #: how much unused capacity the table banks, in seconds of it (DynamoDB: 300); 0.1: no
    #: burst to absorb a pacer's overshoots, as in a backfill into a table already at capacity
    burst_s: float = 300.0


SCENARIOS = [
    Scenario("uniform keys, burst credit spent"),
    Scenario("uniform keys, 5 s of burst credit banked", burst_credit_s=5.0),
    Scenario("a hot key takes 30 % of writes, burst spent", hot_share=0.3),
    Scenario("capacity drops to half mid-run, burst spent", drop_to=TABLE_WCU / 2),
    Scenario("uniform keys, no burst (0.1 s banked)", burst_s=0.1),
    Scenario("a hot key takes 30 % of writes, no burst (0.1 s banked)", hot_share=0.3, burst_s=0.1),
]


@dataclass
class Outcome:
    seconds: float
    wcu: float
    granted: float
    requests: int
    lost: int
    hot_partition_wcu_per_s: float | None

    @property
    def used(self) -> float:
        return self.wcu / self.granted


def _keys(scenario: Scenario) -> list[str]:
    out = []
    for i in range(ITEMS):
        if scenario.hot_share and (i * 7919) % 1000 < scenario.hot_share * 1000:
            out.append("HOT")
        else:
            out.append(f"t{i}")
    return out


def _items(scenario: Scenario) -> list[dict[str, Any]]:
    return [
        {"pk": {"S": key}, "sk": {"S": f"{i:06d}"}, "v": {"N": str(i)}}
        for i, key in enumerate(_keys(scenario))
    ]


def _ours(endpoint: str, table: str, items: list[dict[str, Any]]) -> None:
    clients = make_clients(
        region="us-east-1", endpoint_url=endpoint, retry_mode="standard", max_attempts=5,
        pool_size=8,
    )  # fmt: skip
    context = ConsumerContext(
        route="bench",
        config_key="routes.0",
        stream=StreamInfo("arn", "orders", "NEW_AND_OLD_IMAGES", ("pk", "sk")),
        clients=clients,
        http=None,
        memory_caches={},
        sleep=time.sleep,
        stop=threading.Event(),
    )
    consumer = build({"table": table, "max_attempts": 100}, context)
    records = [make_record({"pk": i["pk"], "sk": i["sk"]}, new_image=i) for i in items]
    for start in range(0, len(records), 100):  # batches of 100, as the worker delivers them
        consumer(records[start : start + 100])
    consumer.close()


def _batch_writer(mode: str) -> Callable[[str, str, list[dict[str, Any]]], None]:
    def run(endpoint: str, table: str, items: list[dict[str, Any]]) -> None:
        retries: Any = {"mode": mode, "max_attempts": 50}
        make: Any = boto3.resource
        resource = make(
            "dynamodb", endpoint_url=endpoint, region_name="us-east-1",
            config=Config(retries=retries),
        )  # fmt: skip
        deserialize = TypeDeserializer().deserialize
        with resource.Table(table).batch_writer() as writer:
            for item in items:
                writer.put_item(Item={k: deserialize(v) for k, v in item.items()})

    return run


WRITERS: list[tuple[str, Callable[[str, str, list[dict[str, Any]]], None]]] = [
    ("ours", _ours),
    ("boto3 batch_writer, standard", _batch_writer("standard")),
    ("boto3 batch_writer, adaptive", _batch_writer("adaptive")),
]


def model_for(scenario: Scenario, clock: Callable[[], float] = time.monotonic) -> CapacityModel:
    """The table ``scenario`` writes into."""
    return CapacityModel(
        wcu_per_s=TABLE_WCU,
        burst_s=scenario.burst_s,
        burst_credit=scenario.burst_credit_s * TABLE_WCU,
        partitions=PARTITIONS,
        partition_wcu_per_s=PARTITION_WCU,
        clock=clock,
    )


def _run(
    moto: str, scenario: Scenario, write: Callable[[str, str, list[dict[str, Any]]], None]
) -> Outcome:
    dynamodb = boto3.client("dynamodb", endpoint_url=moto, region_name="us-east-1")
    table = f"capacity-{uuid.uuid4().hex[:8]}"
    create_table(dynamodb, table, stream_view=None)
    model = model_for(scenario)
    items = _items(scenario)
    with CapacityProxy(moto, model) as proxy:
        hot = proxy.partition_of({"pk": {"S": "HOT"}})
        timer = None
        drop_after = len(items) / TABLE_WCU / 3  # as granted() assumes
        if scenario.drop_to is not None:
            timer = threading.Timer(drop_after, model.set_capacity, args=(scenario.drop_to,))
            timer.start()
        started = time.monotonic()
        write(proxy.endpoint, table, items)
        seconds = time.monotonic() - started
        if timer is not None:
            timer.cancel()
        stats = proxy.stats
    lost = len(items) - len(scan_all(dynamodb, table))
    # tables left behind grow the moto server's heap, and its collector's pauses with it
    dynamodb.delete_table(TableName=table)
    shares = partition_shares(_keys(scenario), proxy.partition_of)
    return Outcome(
        seconds=seconds,
        wcu=float(stats["wcu_written"]),
        granted=granted(scenario, seconds, max(shares)),
        requests=stats["BatchWriteItem_calls"] + stats["PutItem_calls"],
        lost=lost,
        hot_partition_wcu_per_s=(
            stats[f"partition_{hot}_wcu"] / seconds if scenario.hot_share else None
        ),
    )


def partition_shares(keys: list[str], partition_of: Callable[[dict[str, Any]], int]) -> list[float]:
    """The share of the writes (one per key, in order) that lands in each partition."""
    counts = [0] * PARTITIONS
    for key in keys:
        counts[partition_of({"pk": {"S": key}})] += 1
    return [count / len(keys) for count in counts]


def granted(scenario: Scenario, seconds: float, busiest_share: float) -> float:
    """The WCU the model could have let through in ``seconds``, the figure "used" divides by.

    The table's rate over the run (the lower rate after a drop) plus the credit banked at the
    start; but never more than the busiest partition allows, which writes at most
    PARTITION_WCU a second and takes ``busiest_share`` of the writes. That bound is a hot
    key's, and it is also what holds back a table with banked credit: the credit would let
    the table write faster than its partitions can (as in DynamoDB, where a partition's
    1,000 WCU/s caps a burst too). Before, the credit scenario counted the whole credit as
    grantable, so a writer that took every token the model offered used 65 % of it.
    """
    if scenario.drop_to is None:
        table = TABLE_WCU * seconds
    else:
        before = min(seconds, len(_keys(scenario)) / TABLE_WCU / 3)
        table = TABLE_WCU * before + scenario.drop_to * (seconds - before)
    table += scenario.burst_credit_s * TABLE_WCU
    return min(table, PARTITION_WCU * seconds / busiest_share)


def rows(moto: str) -> list[str]:
    lines = [
        f"| batch writes at DynamoDB's capacity, {ITEMS:,} items, {TABLE_WCU:.0f} WCU/s table, "
        f"{PARTITIONS} partitions of {PARTITION_WCU:.0f} WCU/s | writer | capacity used | "
        "requests | items lost | hot partition WCU/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for scenario in SCENARIOS:
        for name, write in WRITERS:
            outcome = _run(moto, scenario, write)
            hot = (
                f"{outcome.hot_partition_wcu_per_s:.0f} of {PARTITION_WCU:.0f}"
                if outcome.hot_partition_wcu_per_s is not None
                else ""
            )
            lines.append(
                f"| {scenario.name} | {name} | {outcome.used:.0%} | {outcome.requests:,} | "
                f"{outcome.lost} | {hot} |"
            )
    return lines


def repeated(moto: str, rounds: int) -> list[str]:
    """Ours alone, ``rounds`` times per scenario: one run swings by several points (thread
    timing decides when the table first pushes back), so pacing changes are judged on these
    medians and minimums (ADR 0018)."""
    lines = [
        f"| ours, {rounds} runs per scenario | capacity used: median | min | max "
        "| requests: median | items lost | hot partition WCU/s: min |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in SCENARIOS:
        outcomes = [_run(moto, scenario, _ours) for _ in range(rounds)]
        used = sorted(o.used for o in outcomes)
        requests = sorted(o.requests for o in outcomes)
        hot = [o.hot_partition_wcu_per_s for o in outcomes if o.hot_partition_wcu_per_s]
        lines.append(
            f"| {scenario.name} | {used[len(used) // 2]:.0%} | {used[0]:.0%} | {used[-1]:.0%} "
            f"| {requests[len(requests) // 2]} | {sum(o.lost for o in outcomes)} "
            f"| {f'{min(hot):.0f} of {PARTITION_WCU:.0f}' if hot else ''} |"
        )
    return lines


if __name__ == "__main__":  # python -m benchmarks.capacity [--rounds N]: ours alone, N runs
    import argparse

    from processor.testing import moto_process

    parser = argparse.ArgumentParser(prog="python -m benchmarks.capacity")
    parser.add_argument("--rounds", type=int, default=0, help="ours alone, N runs, medians")
    args = parser.parse_args()
    with moto_process() as url:
        print("\n".join(repeated(url, args.rounds) if args.rounds else rows(url)))
