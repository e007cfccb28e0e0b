"""Batch writes into the moto server: items/s straight, and through the capacity proxy with
no limit (what the proxy and moto absorb: it must be well above the capacity modelled in
benchmarks/capacity.py, so that the writer is what those rows measure). Items lost are
counted by scanning the table afterwards (must be 0)."""

from __future__ import annotations

import threading
import time
import uuid

from benchmarks.capacity import TABLE_WCU
from consumers.batch_write import build
from processor.aws import make_clients
from processor.core.consumer import ConsumerContext, StreamInfo
from processor.testing import CapacityModel, CapacityProxy, create_table, make_record, scan_all

ITEMS = 2000


def _run(endpoint: str, target: str) -> tuple[float, int]:
    table = f"bench-{uuid.uuid4().hex[:8]}"
    clients = make_clients(
        region="us-east-1",
        endpoint_url=endpoint,
        retry_mode="standard",
        max_attempts=5,
        pool_size=4,
    )
    create_table(clients.dynamodb, table, stream_view=None)
    target_clients = make_clients(
        region="us-east-1", endpoint_url=target, retry_mode="standard", max_attempts=5, pool_size=4
    )
    stop = threading.Event()
    context = ConsumerContext(
        route="bench",
        config_key="routes.0",
        stream=StreamInfo("arn", "orders", "NEW_AND_OLD_IMAGES", ("pk", "sk")),
        clients=target_clients,
        http=None,
        memory_caches={},
        sleep=time.sleep,
        stop=stop,
    )
    consumer = build({"table": table, "max_attempts": 50}, context)
    records = [
        make_record(
            {"pk": {"S": f"t{i % 13}"}, "sk": {"S": f"{i:06d}"}},
            event_name="INSERT",
            new_image={"pk": {"S": f"t{i % 13}"}, "sk": {"S": f"{i:06d}"}, "v": {"N": str(i)}},
        )
        for i in range(ITEMS)
    ]
    started = time.perf_counter()
    for start in range(0, ITEMS, 100):  # batches of 100, as the worker delivers them
        consumer(records[start : start + 100])
    elapsed = time.perf_counter() - started
    lost = ITEMS - len(scan_all(clients.dynamodb, table))
    return ITEMS / elapsed, lost


def rows(endpoint: str) -> list[str]:
    lines = [
        f"| batch writes into the moto server, {ITEMS} items | items/s | items lost |",
        "|---|---:|---:|",
    ]
    rate, lost = _run(endpoint, endpoint)
    lines.append(f"| no throttling | {rate:,.0f} | {lost} |")
    unlimited = CapacityModel(wcu_per_s=1e9, burst_credit=1e12, partition_wcu_per_s=1e9)
    with CapacityProxy(endpoint, unlimited) as proxy:
        rate, lost = _run(endpoint, proxy.endpoint)
    lines.append(
        f"| through the capacity proxy, no limit ({rate / TABLE_WCU:.0f}x the "
        f"{TABLE_WCU:.0f} WCU/s modelled below) | {rate:,.0f} | {lost} |"
    )
    return lines
