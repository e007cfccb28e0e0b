"""`make demo`: the whole pipeline end to end on this machine, in about ten seconds.

Starts an embedded DynamoDB (moto server) and a local webhook receiver, creates a
multi-tenant ``orders`` table with a stream and an ``orders_mirror`` table, fills a cache
with one entry per order (Redis at 127.0.0.1:6379 if it answers, else in-process), writes a
few hundred inserts, updates and deletes, runs the worker with config/demo.toml until idle,
and prints what each consumer did and whether the results check out.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import redis
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from consumers.cache import MemoryCache
from processor.app import build_app
from processor.core.values import decode_image
from processor.ops.logs import configure_logging
from processor.ops.summary import stats_table
from processor.settings import load_settings
from processor.testing import (
    WebhookReceiver,
    create_table,
    dynamodb_local,
    moto_server,
    scan_all,
)
from processor.webhooks.signatures import new_secret

ROOT = Path(__file__).resolve().parent.parent
TENANTS = ("acme", "globex", "initech")
REDIS_URL = "redis://127.0.0.1:6379/0"
CACHE_PREFIX = "order:"


def _redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _write_changes(dynamodb: Any, rng: random.Random) -> tuple[int, set[tuple[str, str]]]:
    """Inserts, updates and deletes across tenants; returns (changes, keys touched)."""
    live: list[tuple[str, str]] = []
    touched: set[tuple[str, str]] = set()
    changes = 0
    for i in range(150):
        tenant = TENANTS[i % len(TENANTS)]
        key = (f"TENANT#{tenant}", f"ORDER#{i:04d}")
        dynamodb.put_item(
            TableName="orders",
            Item={
                "pk": {"S": key[0]},
                "sk": {"S": key[1]},
                "status": {"S": "new"},
                "total": {"N": f"{rng.randint(100, 99999) / 100:.2f}"},
                "items": {"NS": [str(n) for n in rng.sample(range(1, 51), 3)]},  # no duplicates
                "tags": {"SS": ["demo", tenant]},
            },
        )
        live.append(key)
        touched.add(key)
        changes += 1
    for key in rng.sample(live, 100):
        dynamodb.update_item(
            TableName="orders",
            Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}},
            UpdateExpression="SET #s = :s, #t = #t + :d",
            ExpressionAttributeNames={"#s": "status", "#t": "total"},
            ExpressionAttributeValues={":s": {"S": "paid"}, ":d": {"N": "0.01"}},
        )
        changes += 1
    for key in rng.sample(live, 40):
        dynamodb.delete_item(TableName="orders", Key={"pk": {"S": key[0]}, "sk": {"S": key[1]}})
        changes += 1
    return changes, touched


def _signed(request: Any, secret: str) -> bool:
    headers = request.headers
    try:
        Webhook(secret).verify(request.body, headers)
    except WebhookVerificationError:
        return False
    return True


def _verify(  # noqa: PLR0917 - the demo's verification takes what main() built
    dynamodb: Any,
    receiver: WebhookReceiver,
    memory: MemoryCache,
    use_redis: bool,
    cache_names: list[str],
    untouched: str,
    webhook_secret: str,
    *,
    changes: int,
    records_read: int,
    pool_size: int,
) -> list[tuple[str, bool, str]]:
    """What the demo promises, checked against the real tables, receiver and cache."""
    # compared as values (sets as sets, numbers as Decimals): DynamoDB orders sets freely
    source = {(i["pk"]["S"], i["sk"]["S"]): decode_image(i) for i in scan_all(dynamodb, "orders")}
    mirror = {
        (i["pk"]["S"], i["sk"]["S"]): decode_image(i) for i in scan_all(dynamodb, "orders_mirror")
    }
    received = receiver.received("/orders")
    signed_ok = sum(_signed(r, webhook_secret) for r in received)
    event_ids = [r.headers.get("Idempotency-Key") for r in received]
    if use_redis:
        left = redis.Redis.from_url(REDIS_URL)
        cache_gone = sum(not left.exists(n) for n in cache_names)
        untouched_kept = bool(left.exists(untouched))
        left.delete(untouched)
    else:
        cache_gone = sum(n not in memory for n in cache_names)
        untouched_kept = untouched in memory
    distinct = len(set(event_ids))
    return [
        ("records read from the stream", records_read == changes, f"{records_read} of {changes}"),
        ("mirror equals source", source == mirror, f"{len(mirror)} items, {len(source)} in source"),
        (
            "webhooks delivered once each",
            distinct == len(event_ids) == changes,
            f"{len(received)} POSTs, {distinct} distinct event ids",
        ),
        ("webhook signatures valid", signed_ok == len(received), f"{signed_ok} of {len(received)}"),
        (
            "changed orders' cache entries gone",
            cache_gone == len(cache_names),
            f"{cache_gone} of {len(cache_names)}",
        ),
        ("untouched cache entry kept", untouched_kept, untouched),
        (
            "connections opened to the receiver",
            receiver.connections <= pool_size,
            f"{receiver.connections} for {len(received)} requests (pooled)",
        ),
    ]


def _multilang(endpoint: str, workdir: Path, changes: int) -> tuple[str, bool, str]:
    """AWS's amazon_kclpy sample processor, unchanged, under `dsp multilang`."""
    properties = (ROOT / "config" / "multilang.example.properties").read_text()
    properties = properties.replace("python3 ", f"{sys.executable} ", 1)
    path = workdir / "app.properties"
    path.write_text(properties)
    print("\nrunning: dsp multilang --properties config/multilang.example.properties ...")
    print("  (one child per shard: python -m samples.sample_kclpy_app, from amazon_kclpy)")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "processor.cli", "multilang"),
            *("--properties", str(path), "--stop-when-idle", "1.5"),
        ],
        env={
            **os.environ,
            "AWS_ENDPOINT_URL": endpoint,
            "DSP_DEAD_LETTER__PATH": str(workdir / "kcl-dead-letters.jsonl"),
            "DSP_LOGGING__FORMAT": "json",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=workdir,
    )
    logged = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    said = [e["line"] for e in logged if e.get("event") == "multilang_child_stderr"]
    seen = "".join(said).count("Record (Partition Key:")  # it writes no newlines
    checkpoints = [e for e in logged if e.get("event") == "multilang_checkpoint"]
    if said:
        print(f"  the sample said: {said[0][:110]}...")
    print(f"  {len(checkpoints)} checkpoint(s) written to the lease; exit status {done.returncode}")
    return (
        "kclpy sample processor got every change",
        done.returncode == 0 and seen == changes and bool(checkpoints),
        f"{seen} of {changes} records, {len(checkpoints)} checkpoints",
    )


def main() -> int:  # noqa: PLR0915 - the demo's script, in the order it prints
    rng = random.Random(7)
    webhook_secret = new_secret()
    use_redis = _redis_available()
    workdir = Path(tempfile.mkdtemp(prefix="dsp-demo-"))
    backend = os.environ.get("DSP_TEST_BACKEND", "moto")
    if backend == "dynamodb-local":
        local_dir = os.environ.get("DSP_TEST_DYNAMODB_LOCAL_DIR", ".cache/dynamodb-local")
        server = dynamodb_local(local_dir)
        name = "DynamoDB Local"
    else:
        server, name = moto_server(), "moto server"
    with server as endpoint, WebhookReceiver() as receiver:
        print(f"embedded DynamoDB ({name}) at {endpoint}")
        print(f"webhook receiver at {receiver.url}/orders")
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        create_table(dynamodb, "orders")
        create_table(dynamodb, "orders_mirror", stream_view=None)

        # Caches of every order a service might hold, plus one entry the demo never touches.
        memory = MemoryCache()
        cache_names = [f"{CACHE_PREFIX}TENANT#{TENANTS[i % 3]}:ORDER#{i:04d}" for i in range(150)]
        untouched = f"{CACHE_PREFIX}TENANT#acme:ORDER#9999"
        if use_redis:
            client = redis.Redis.from_url(REDIS_URL)
            client.delete(*cache_names, untouched)
            client.mset(dict.fromkeys([*cache_names, untouched], "cached"))
            print("cache: Redis at 127.0.0.1:6379 answered; invalidating there")
        else:
            for name in [*cache_names, untouched]:
                memory.set(name, "cached")
            print("cache: no Redis at 127.0.0.1:6379; using the in-process cache")

        started = time.perf_counter()
        changes, _touched = _write_changes(dynamodb, rng)
        print(f"wrote {changes} changes across tenants {', '.join(TENANTS)}")

        environ = {
            **os.environ,
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "DSP_ROUTES__NOTIFY__OPTIONS__URL": f"{receiver.url}/orders",
            "DSP_ROUTES__NOTIFY__OPTIONS__SECRET": webhook_secret,
            "DSP_ROUTES__INVALIDATE__OPTIONS__REDIS_URL": REDIS_URL if use_redis else "memory",
            "DSP_DEAD_LETTER__PATH": str(workdir / "dead-letter.jsonl"),
        }
        settings = load_settings(ROOT / "config" / "demo.toml", environ=environ)
        configure_logging(settings.logging.level, settings.logging.format)
        app = build_app(settings, memory_caches={"memory": memory})
        print("running: dsp run --config config/demo.toml --stop-when-idle 1.5 ...\n")
        summary = app.worker.run(stop=threading.Event(), stop_when_idle=1.5)
        app.close()
        elapsed = time.perf_counter() - started

        print(stats_table(settings, app.stats))
        per_tenant: dict[str, int] = {}
        assert app.metrics.tenants is not None
        for (route, tenant, outcome), count in app.metrics.tenants.snapshot().items():
            if route == "notify" and outcome == "routed":
                per_tenant[tenant] = per_tenant.get(tenant, 0) + count
        print(
            "webhooks per tenant ([tenancy] pk ^TENANT#...): "
            + ", ".join(f"{t} {n}" for t, n in sorted(per_tenant.items()))
        )
        print()
        checks = _verify(
            dynamodb,
            receiver,
            memory,
            use_redis,
            cache_names,
            untouched,
            webhook_secret,
            changes=changes,
            records_read=summary.records_read,
            pool_size=settings.http.pool_size,
        )
        checks.append(_multilang(endpoint, workdir, changes))
        width = max(len(c[0]) for c in checks)
        for name, ok, detail in checks:
            print(f"{'ok  ' if ok else 'FAIL'}  {name.ljust(width)}  {detail}")
        print(f"\n{changes} changes handled end to end in {elapsed:.1f} s")
        return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
