"""End to end against the moto server: a writer at a fixed rate, `dsp run` with all three
consumers (webhook first), lag from the write to the webhook's receipt, and the worker's CPU
seconds per 1,000 records (from /proc, over the delivery span)."""

from __future__ import annotations

import statistics
import time
import uuid

import boto3

from benchmarks._dsp import cache_redis_url, cpu_seconds, dsp_run
from processor.testing import WebhookReceiver, create_table

RATE_PER_S = 50
DURATION_S = 20
POLL_FLOOR_S = 0.05


def rows(endpoint: str) -> list[str]:
    unique = uuid.uuid4().hex[:8]
    table, mirror = f"e2e-{unique}", f"e2e-mirror-{unique}"
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    create_table(ddb, table)
    create_table(ddb, mirror, stream_view=None)
    redis_url = cache_redis_url()
    with WebhookReceiver() as receiver:
        config = f"""
[stream]
table = "{table}"
poll_interval_min_s = {POLL_FLOOR_S}
poll_interval_max_s = 0.2
[checkpoints]
table = "e2e-leases-{unique}"
application = "e2e"
[logging]
level = "WARNING"
[[routes]]
name = "notify"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/e2e"
[[routes]]
name = "invalidate"
consumer = "cache"
[routes.options]
keys = ["e2e:{{pk}}:{{sk}}"]
redis_url = "{redis_url}"
[[routes]]
name = "mirror"
consumer = "batch_write"
[routes.options]
table = "{mirror}"
"""
        with dsp_run(endpoint, config) as worker:
            written: dict[str, float] = {}
            cpu_start = cpu_seconds(worker.pid)
            started = time.monotonic()
            n = RATE_PER_S * DURATION_S
            for i in range(n):
                target = started + i / RATE_PER_S
                time.sleep(max(0.0, target - time.monotonic()))
                sk = f"{i:06d}"
                written[sk] = time.time()
                ddb.put_item(TableName=table, Item={"pk": {"S": "TENANT#e2e"}, "sk": {"S": sk}})
            receiver.wait_for(n, timeout_s=60, path="/e2e")
            cpu = cpu_seconds(worker.pid) - cpu_start
        lags = sorted(
            (r.received_wall - written[r.json()["keys"]["sk"]]) * 1000
            for r in receiver.received("/e2e")
        )
        achieved = n / (time.monotonic() - started)
    q = statistics.quantiles(lags, n=100)
    return [
        f"| end to end, {n} writes at {RATE_PER_S}/s, 3 consumers (cache: {redis_url}) "
        "| p50 ms | p95 ms | p99 ms | CPU s per 1,000 records |",
        "|---|---:|---:|---:|---:|",
        f"| write to webhook receipt (poll floor {POLL_FLOOR_S * 1000:.0f} ms, window 0) "
        f"| {q[49]:.0f} | {q[94]:.0f} | {q[98]:.0f} | {cpu / n * 1000:.2f} |",
        f"| (delivered {len(lags)} of {n}; writer achieved {achieved:.0f}/s) | | | | |",
    ]
