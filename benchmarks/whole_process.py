"""The whole process, as a user feels it: `dsp run --stop-when-idle` against a plain boto3
loop (``get_records`` + ``TypeDeserializer``, benchmarks/boto3_loop.py), each reading the same
stream in its own process.

The stream is the stream double (processor.testing.StreamDouble) serving RECORDS INSERTs of
the decode rows' 10-attribute items on one open shard; leases, the projection's table and
everything else are in the moto server. moto's own stream takes about a second and a half
per page of 1,000 (DynamoDB takes a tenth of that), which stretched each run to tens of
seconds of waiting whose time-based cost had to be subtracted, and made the figure noisy;
the double serves a page in tens of milliseconds.

Each side's cost per record is its process's CPU time (user + system, from ``wait4``) reading
the stream, minus the same process reading an empty stream: start-up, imports, the lease
table, the idle wait before it stops all cancel. The empty `dsp run` is kept running as long
as the full one (``--stop-when-idle``): what a worker spends per second whatever it reads
(lease renewals and scans, discovery, polls at the tip) is the idle rows' figure, not charged
to the records here. Rounds alternate the two sides (and the full and empty streams) so drift
on a shared machine hits both alike; the medians of the differences are reported.

Rows: the consumer reads the keys only; it reads every attribute of ``NewImage``; and a real
route mix (a webhook to a local receiver, a ``batch_write`` projection, a cache invalidation),
reported as CPU seconds per 1,000 records (boto3 has no counterpart to it)."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3

from benchmarks._dsp import cache_redis_url
from benchmarks.pages import _image
from processor.testing import WebhookReceiver, create_table
from processor.testing.stream_double import Scenario, ShardSpec, StreamDouble

RECORDS = 50_000
MIX_RECORDS = 10_000  # a webhook POST each: the route mix reads fewer
ROUNDS = 5
STOP_WHEN_IDLE_S = 1.0
SHARD = "shardId-00000001795000000000-00000001"


def _scenario(n: int) -> Scenario:
    """One open shard of ``n`` INSERTs of the decode rows' 10-attribute items, as DynamoDB
    Streams serves them (``Keys`` and ``NewImage``, stream view NEW_IMAGE)."""
    rng = random.Random(7)
    changes: list[dict[str, Any]] = []
    for i in range(n):
        item = _image(rng, i)
        changes.append(
            {
                "eventName": "INSERT",
                "Keys": {"pk": item["pk"], "sk": item["sk"]},
                "NewImage": item,
                "SizeBytes": 420,
                "StreamViewType": "NEW_IMAGE",
            }
        )
    keys = [change["Keys"]["pk"]["S"] for change in changes]
    shard = ShardSpec(SHARD, None, keys, closed=False, changes=changes)
    return Scenario([shard], key_attributes=("pk", "sk"))


def _cpu_of(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``argv`` to its end: its CPU seconds (user + system) and wall seconds."""
    started = time.monotonic()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )  # fmt: skip
    assert process.stderr is not None
    _, status, usage = os.wait4(process.pid, 0)
    errors = process.stderr.read().decode()
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, f"{argv[:4]} exited {process.returncode}: {errors[-2000:]}"
    return usage.ru_utime + usage.ru_stime, time.monotonic() - started


class _Side:
    """One side of a row: how to run it against a table."""

    def __init__(self, endpoint: str, tmp: Path) -> None:
        self.endpoint = endpoint
        self.tmp = tmp
        self._empty_wall: float | None = None  # how long an empty run takes: start-up + idle
        self.env = {
            **os.environ,
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "PYTHONHASHSEED": "0",
        }

    def boto3_loop(self, stream: StreamDouble, *, images: bool) -> float:
        argv = [
            sys.executable, "-m", "benchmarks.boto3_loop", stream.endpoint, stream.stream_arn
        ]  # fmt: skip
        return _cpu_of([*argv, "--images"] if images else argv, self.env)[0]

    def dsp(
        self, stream: StreamDouble, routes: str, *, idle_s: float = STOP_WHEN_IDLE_S
    ) -> tuple[float, float]:
        config = self.tmp / f"{uuid.uuid4().hex[:8]}.toml"
        config.write_text(
            f"""
[stream]
arn = "{stream.stream_arn}"
[checkpoints]
table = "whole-leases-{uuid.uuid4().hex[:8]}"
application = "whole"
[logging]
level = "WARNING"
[dead_letter]
path = "{self.tmp / "dl.jsonl"}"
{routes}
"""
        )
        argv = [sys.executable, "-m", "processor.cli", "run", "--config", str(config)]
        env = {**self.env, "DSP_AWS__STREAMS_ENDPOINT_URL": stream.endpoint}
        return _cpu_of([*argv, "--stop-when-idle", f"{idle_s:.2f}"], env)

    def dsp_pair(self, full: StreamDouble, empty: StreamDouble, routes: str) -> tuple[float, float]:
        """CPU seconds of `dsp run` on the full table, and on the empty one for as long."""
        if self._empty_wall is None:
            self._empty_wall = self.dsp(empty, routes)[1]
        cpu_full, wall_full = self.dsp(full, routes)
        idle_s = STOP_WHEN_IDLE_S + max(0.0, wall_full - self._empty_wall)
        return cpu_full, self.dsp(empty, routes, idle_s=idle_s)[0]


def _route(consumer: str) -> str:
    return f'[[routes]]\nname = "read"\nconsumer = "{consumer}"\n'


def _route_mix(receiver_url: str, mirror: str, redis_url: str) -> str:
    return f"""
[[routes]]
name = "notify"
consumer = "webhook"
[routes.options]
url = "{receiver_url}/whole"
[[routes]]
name = "project"
consumer = "batch_write"
[routes.options]
table = "{mirror}"
[[routes]]
name = "invalidate"
consumer = "cache"
[routes.options]
keys = ["whole:{{pk}}:{{sk}}"]
redis_url = "{redis_url}"
"""


def _per_record_us(full: list[float], empty: list[float], n: int) -> list[float]:
    """Each round's CPU per record, µs."""
    return [(f - e) / n * 1e6 for f, e in zip(full, empty, strict=True)]


def measure(endpoint: str, *, records: int = RECORDS, rounds: int = ROUNDS) -> dict[str, Any]:
    """µs of CPU per record for each side of the keys and images rows (medians over the
    rounds), the ratio of the two sides in each round (the sides alternate within a round,
    so a machine's drift between rounds cancels in it; median, min and max), and the route
    mix's CPU seconds per 1,000 records."""
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    mirror = f"whole-mirror-{uuid.uuid4().hex[:8]}"
    create_table(ddb, mirror, stream_view=None)
    redis_url = cache_redis_url()
    cpu: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        cpu.setdefault(name, []).append(value)

    empty_shard = ShardSpec(SHARD, None, [], closed=False)
    with (
        tempfile.TemporaryDirectory() as tmp,
        WebhookReceiver() as receiver,
        StreamDouble(_scenario(records)) as full,
        StreamDouble(_scenario(min(records, MIX_RECORDS))) as mix_full,
        StreamDouble(Scenario([empty_shard], key_attributes=("pk", "sk"))) as empty,
    ):
        side = _Side(endpoint, Path(tmp))
        mix = _route_mix(receiver.url, mirror, redis_url)
        for _ in range(rounds):
            for images in (False, True):
                label = "images" if images else "keys"
                consumer = f"benchmarks.boto3_loop:{'read_new_image' if images else 'read_keys'}"
                for table, which in ((full, "full"), (empty, "empty")):
                    add(f"boto3 {label} {which}", side.boto3_loop(table, images=images))
                with_records, without = side.dsp_pair(full, empty, _route(consumer))
                add(f"dsp {label} full", with_records)
                add(f"dsp {label} empty", without)
            with_records, without = side.dsp_pair(mix_full, empty, mix)
            add("mix full", with_records)
            add("mix empty", without)
        delivered = len({r.json()["keys"]["sk"] for r in receiver.received("/whole")})
    out: dict[str, Any] = {"records": records, "rounds": rounds, "cache": redis_url}
    for label in ("keys", "images"):
        us = {
            who: _per_record_us(cpu[f"{who} {label} full"], cpu[f"{who} {label} empty"], records)
            for who in ("boto3", "dsp")
        }
        ratios = sorted(b / d for b, d in zip(us["boto3"], us["dsp"], strict=True))
        out[f"boto3 {label}"] = statistics.median(us["boto3"])
        out[f"dsp {label}"] = statistics.median(us["dsp"])
        out[f"ratio {label}"] = (statistics.median(ratios), ratios[0], ratios[-1])
    mix_records = min(records, MIX_RECORDS)
    out["mix records"] = mix_records
    out["mix"] = statistics.median(_per_record_us(cpu["mix full"], cpu["mix empty"], mix_records))
    out["mix"] /= 1000
    out["mix delivered"] = delivered
    return out


def rows(endpoint: str) -> list[str]:
    m = measure(endpoint)
    n = m["records"]
    lines = [
        f"| the whole process: `dsp run --stop-when-idle` vs a boto3 loop, {n:,} records of "
        f"one stream (the stream double), CPU per record (start-up subtracted), median of "
        f"{m['rounds']} rounds; ratio: the median of each round's "
        "| ours µs | boto3 loop µs | ratio | min to max |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key in (
        ("consumer reads the keys", "keys"),
        ("consumer reads every attribute of NewImage", "images"),
    ):
        ours, base = m[f"dsp {key}"], m[f"boto3 {key}"]
        ratio, low, high = m[f"ratio {key}"]
        lines.append(
            f"| {label} | {ours:.1f} | {base:.1f} | {ratio:.1f}x | {low:.1f}x to {high:.1f}x |"
        )
    lines.append(
        f"| route mix (webhook to a local receiver, batch_write projection, cache "
        f"invalidation, cache: {m['cache']}; {m['mix records']:,} records): CPU s per 1,000 "
        f"records | {m['mix']:.2f} | | | |"
    )
    return lines


if __name__ == "__main__":  # python -m benchmarks.whole_process [--records N] [--rounds N]
    import argparse

    from processor.testing import moto_server

    parser = argparse.ArgumentParser(prog="python -m benchmarks.whole_process")
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    with moto_server() as url:
        result = measure(url, records=args.records, rounds=args.rounds)
        print(result)
