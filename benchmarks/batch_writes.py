"""Batch writes into the moto server: items/s straight, and through a throttling proxy.
Items lost are counted by scanning the table afterwards (must be 0)."""

from __future__ import annotations

import threading
import time
import uuid

from consumers.batch_write import build
from processor.aws import make_clients
from processor.core.consumer import ConsumerContext, StreamInfo
from processor.testing import ThrottlingProxy, create_table, make_record, scan_all

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
    with ThrottlingProxy(endpoint, throttle_every=4, partial_every=3) as proxy:
        rate, lost = _run(endpoint, proxy.endpoint)
        throttled, unprocessed = proxy.calls["throttled"], proxy.calls["unprocessed_items"]
    lines.append(
        f"| every 4th call throttled, every 3rd half unprocessed ({throttled} throttles, "
        f"{unprocessed} items resent) | {rate:,.0f} | {lost} |"
    )
    return lines
