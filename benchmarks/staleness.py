"""Cache staleness window: from a write acknowledged by DynamoDB (the moto server) to the
moment a service's SubscribedCache drops the entry, through `dsp run` (cache route with a
channel) and Redis pub/sub. Compared with what a plain TTL cache of 300 s gives (computed:
an entry cached at a uniformly random time before the write stays stale until it expires)."""

from __future__ import annotations

import statistics
import threading
import time
import uuid

import boto3
import redis

from benchmarks._dsp import dsp_run
from consumers.cache import SubscribedCache
from processor.testing import create_table

REDIS_URL = "redis://127.0.0.1:6379/0"
WRITES = 400
RATE_PER_S = 20
TTL_BASELINE_S = 300


def rows(endpoint: str) -> list[str]:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError:
        return ["| cache staleness | skipped: no Redis at 127.0.0.1:6379 |", "|---|---|"]
    unique = uuid.uuid4().hex[:8]
    table = f"stale-{unique}"
    channel = f"dsp-bench-{unique}"
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    create_table(ddb, table)
    observed: dict[str, float] = {}
    lock = threading.Lock()

    def seen(name: str) -> None:
        with lock:
            observed.setdefault(name, time.time())

    cache = SubscribedCache(REDIS_URL, channel, on_invalidate=seen).start()
    config = f"""
[stream]
table = "{table}"
starting_position = "LATEST"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.2
[checkpoints]
table = "stale-leases-{unique}"
application = "stale"
[logging]
level = "WARNING"
[[routes]]
name = "invalidate"
consumer = "cache"
[routes.options]
keys = ["user:{{pk}}:{{sk}}"]
redis_url = "{REDIS_URL}"
channel = "{channel}"
"""
    try:
        with dsp_run(endpoint, config):
            written: dict[str, float] = {}
            started = time.monotonic()
            for i in range(WRITES):
                time.sleep(max(0.0, started + i / RATE_PER_S - time.monotonic()))
                name = f"user:TENANT#bench:{i:05d}"
                cache.set(name, {"cached": i})
                ddb.put_item(
                    TableName=table,
                    Item={"pk": {"S": "TENANT#bench"}, "sk": {"S": f"{i:05d}"}, "v": {"N": "1"}},
                )
                written[name] = time.time()
            deadline = time.monotonic() + 30
            while len(observed) < WRITES and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        cache.close()
    windows = sorted((observed[n] - written[n]) * 1000 for n in written if n in observed)
    q = statistics.quantiles(windows, n=100)
    return [
        f"| cache staleness, {WRITES} writes at {RATE_PER_S}/s | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|",
        f"| write acknowledged to entry dropped by SubscribedCache (dsp run, Redis pub/sub; "
        f"{len(windows)} of {WRITES} observed) | {q[49]:.0f} | {q[98]:.0f} | {windows[-1]:.0f} |",
        f"| plain in-process TTL cache of {TTL_BASELINE_S} s (computed) "
        f"| {TTL_BASELINE_S * 500:.0f} | {TTL_BASELINE_S * 990:.0f} "
        f"| {TTL_BASELINE_S * 1000:.0f} |",
    ]
