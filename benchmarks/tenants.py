"""Tenant growth: /metrics size and RSS while 10, 10,000 and 40,000 tenants pass through a
webhook route (per-tenant rate limits) and a cache route. Each tenant sends one record. The
engine runs in a fresh process of its own and the receiver in another, so RSS is the
engine's alone."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import structlog
import urllib3

STEPS = (10, 10_000, 40_000)
_RECEIVER = (
    "import time\nfrom processor.testing import WebhookReceiver\n"
    "with WebhookReceiver() as r:\n    print(r.url, flush=True)\n    time.sleep(600)\n"
)


def _rss_mib() -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+)", status)
    return int(match.group(1)) // 1024 if match else 0


def _measure(url: str) -> list[dict[str, Any]]:
    """Runs in the child: the engine's own figures after each step."""
    from consumers.cache import build as build_cache  # noqa: PLC0415 - the child's imports
    from consumers.webhook import build  # noqa: PLC0415
    from processor.core.consumer import ConsumerContext, StreamInfo  # noqa: PLC0415
    from processor.core.dispatch import Dispatcher  # noqa: PLC0415
    from processor.core.retry import RetryPolicy  # noqa: PLC0415
    from processor.core.routing import Route  # noqa: PLC0415
    from processor.core.tenancy import TenantStats  # noqa: PLC0415
    from processor.ops.metrics import Metrics  # noqa: PLC0415
    from processor.testing import make_record  # noqa: PLC0415

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    def context() -> ConsumerContext:
        return ConsumerContext(
            route="bench",
            config_key="routes.0",
            stream=StreamInfo("arn:x", "bench", "NEW_AND_OLD_IMAGES", ("pk", "sk")),
            clients=None,
            http=urllib3.PoolManager(maxsize=4, retries=False),
            memory_caches={},
            sleep=lambda _s: None,
            stop=threading.Event(),
        )

    class NoSink:
        def send(self, entries: Any) -> None:
            return

    hooks_ctx, cache_ctx = context(), context()
    hooks = build({"url": f"{url}/t/{{tenant}}", "tenant_rate_per_s": 1000.0}, hooks_ctx)
    cache = build_cache({"keys": ["order:{tenant}:{pk}"]}, cache_ctx)
    stats = {"hooks": hooks_ctx.stats, "cache": cache_ctx.stats}
    tenants = TenantStats()
    dispatcher = Dispatcher(
        [Route("hooks", hooks), Route("cache", cache)],
        NoSink(),
        RetryPolicy(max_retries=0),
        stats=stats,
        stop=threading.Event(),
        tenant_stats=tenants,
    )
    metrics = Metrics(stats, tenants=tenants)
    done, out = 0, []
    for upto in STEPS:
        for start in range(done, upto, 500):
            records = []
            for i in range(start, min(start + 500, upto)):
                record = make_record({"pk": {"S": f"TENANT#t{i}"}, "sk": {"S": "1"}})
                record.tenant = f"t{i}"
                records.append(record)
            dispatcher.dispatch(records)
        done = upto
        gc.collect()
        out.append(
            {
                "tenants": upto,
                "metrics_kib": len(metrics.exposition()) / 1024,
                "rss_mib": _rss_mib(),
            }
        )
    return out


def rows() -> list[str]:
    receiver = subprocess.Popen(
        [sys.executable, "-c", _RECEIVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        url = receiver.stdout.readline().strip()
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.tenants", url],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        receiver.kill()
        receiver.wait()
    steps = json.loads(child.stdout)
    lines = [
        "| tenant growth (one record each, webhook + cache routes) | /metrics KiB | RSS MiB |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {s['tenants']:,} tenants | {s['metrics_kib']:.1f} | {s['rss_mib']} |" for s in steps
    ]
    return lines


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1])))
