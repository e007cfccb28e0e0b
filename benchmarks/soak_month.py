"""`make soak-month`: hundreds of shard generations in minutes, and whether anything grows.

One `dsp run` reads the stream double with four lineages that roll over every ``rollover_s``
(DynamoDB Streams rolls about every 4 hours: 300 generations are about 50 days) and forget a
shard ``retention`` generations after it closed. Changes arrive at a steady rate. Every
``every`` generations one line: the lease table's size, the items the worker's last lease
scan read (its ``dsp_lease_scan_items`` gauge; a worker without it reads the whole table), the
shards the stream lists, the worker's RSS and its CPU per 1,000 records over the window.
Flat columns are the point. Leases in the moto server; the worker is a separate process whose
CPU is read from /proc.

    python -m benchmarks.soak_month [--generations 300] [--rollover-s 0.4]

``SOAK_WORKER_TREE`` runs another tree's worker (e.g. a worktree of an older commit) against
this tree's double, for before/after figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from benchmarks._dsp import cpu_seconds, rss_mib
from processor.testing import moto_server
from processor.testing.stream_double import Scenario, StreamDouble

LINEAGES = 4
KEYS = [f"k{i}" for i in range(32)]


@dataclass
class Sample:
    generation: int
    leases: int
    scan_items: int
    listed: int
    rss_mib: float
    cpu_ms_per_1000: float
    records: int  # read so far


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metric(text: str, name: str) -> float | None:
    """A metric's value in a /metrics page, summed over its label sets (``stream``, ...)."""
    values = re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.MULTILINE)
    return sum(float(v) for v in values) if values else None


def soak(
    endpoint: str,
    *,
    generations: int = 300,
    rollover_s: float = 0.4,
    retention: int = 10,
    rate_per_s: float = 100.0,
    every: int = 30,
    cleanup: bool = True,
    out: Any = sys.stdout,
) -> list[Sample]:
    """Run the soak; one :class:`Sample` per ``every`` generations (printed as it comes)."""
    scenario = Scenario.rolling(
        lineages=LINEAGES, rollover_s=rollover_s, retention_s=retention * rollover_s
    )
    name = f"soak-{uuid.uuid4().hex[:8]}"
    port = free_port()
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory() as tmp, StreamDouble(scenario) as double:
        config = Path(tmp) / "dsp.toml"
        cleanup_line = "cleanup_interval_s = 1" if cleanup else "cleanup = false"
        config.write_text(
            f"""
[stream]
arn = "{double.stream_arn}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.2
discovery_interval_s = 1
[checkpoints]
table = "{name}"
application = "{name}"
lease_timeout_s = 4
renew_interval_s = 1
lease_scan_interval_s = 0.5
{cleanup_line if os.environ.get("SOAK_WORKER_TREE") is None else ""}
[batch]
max_records = 100
[observability]
metrics_port = {port}
[dead_letter]
path = "{Path(tmp) / "dl.jsonl"}"
[logging]
level = "WARNING"
[[routes]]
name = "noop"
consumer = "benchmarks._dsp:noop"
"""
        )
        env = {
            **os.environ,
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint,
        }
        other = os.environ.get("SOAK_WORKER_TREE")
        if other:
            env["PYTHONPATH"] = f"{other}{os.pathsep}{Path.cwd()}"
        log = (Path(tmp) / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=other or None,
        )
        written = [0]
        stop = threading.Event()

        def write() -> None:
            n = 0
            while not stop.is_set():
                double.write(KEYS[n % len(KEYS)])
                n += 1
                written[0] = n
                time.sleep(1 / rate_per_s)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        print(
            "| generation | leases in the table | items per lease scan | shards listed "
            "| records read | RSS MiB | CPU ms per 1,000 records |",
            file=out,
        )
        print("|---:|---:|---:|---:|---:|---:|---:|", file=out)
        try:
            cpu_before, records_before = cpu_seconds(worker.pid), 0
            target = every
            while target <= generations:
                while double.generation < target:
                    if worker.poll() is not None:
                        tail = (Path(tmp) / "worker.log").read_text()[-2000:]
                        raise RuntimeError(f"the worker exited with {worker.returncode}: {tail}")
                    time.sleep(0.05)
                leases = dynamodb.query(
                    TableName=name,
                    KeyConditionExpression="application = :a",
                    ExpressionAttributeValues={":a": {"S": name}},
                    Select="COUNT",
                    ConsistentRead=True,
                )["Count"]
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as page:
                        text = page.read().decode()
                    records = int(_metric(text, "dsp_records_read_total") or 0)
                    scan = _metric(text, "dsp_lease_scan_items")
                except OSError:
                    records, scan = 0, None
                cpu = cpu_seconds(worker.pid)
                handled = max(records - records_before, 1)
                sample = Sample(
                    generation=double.generation,
                    leases=leases,
                    scan_items=int(scan) if scan is not None else leases,
                    listed=len(scenario.shards),
                    rss_mib=rss_mib(worker.pid),
                    cpu_ms_per_1000=(cpu - cpu_before) * 1000 / handled * 1000,
                    records=records,
                )
                cpu_before, records_before = cpu, records
                samples.append(sample)
                print(
                    f"| {sample.generation} | {sample.leases} | {sample.scan_items} "
                    f"| {sample.listed} | {sample.records:,} | {sample.rss_mib:.0f} "
                    f"| {sample.cpu_ms_per_1000:.0f} |",
                    file=out,
                    flush=True,
                )
                target += every
        finally:
            stop.set()
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            log.close()
            with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
                dynamodb.delete_table(TableName=name)
    return samples


def rows(endpoint: str) -> list[str]:
    """`make bench`: the lease table after 300 generations, with cleanup and without (as
    before it existed), one soak each in this run."""
    with open(os.devnull, "w") as quiet:
        on = soak(endpoint, generations=300, every=300, out=quiet)[-1]
        off = soak(endpoint, generations=300, every=300, cleanup=False, out=quiet)[-1]
    return [
        "| 300 generations of 4 lineages (1,204 shards), `dsp run` | cleanup (default) "
        "| cleanup = false | ratio |",
        "|---|---:|---:|---:|",
        f"| lease scan items after 300 generations | {on.scan_items:,} | {off.scan_items:,} "
        f"| {off.scan_items / max(on.scan_items, 1):.0f}x fewer |",
        f"| shards the stream lists | {on.listed} | {off.listed} | |",
        f"| records read in the run | {on.records:,} | {off.records:,} | |",
        f"| RSS MiB at the end | {on.rss_mib:.0f} | {off.rss_mib:.0f} | |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=300)
    parser.add_argument("--rollover-s", type=float, default=0.4)
    parser.add_argument("--every", type=int, default=30)
    parser.add_argument("--no-cleanup", action="store_true", help="checkpoints.cleanup = false")
    args = parser.parse_args()
    started = time.monotonic()
    with moto_server() as endpoint:
        samples = soak(
            endpoint,
            generations=args.generations,
            rollover_s=args.rollover_s,
            every=args.every,
            cleanup=not args.no_cleanup,
        )
    first, last = samples[0], samples[-1]
    print(
        f"\n{last.generation} generations ({LINEAGES * (last.generation + 1)} shards) in "
        f"{time.monotonic() - started:.0f} s, {last.records:,} records: leases "
        f"{first.leases} -> {last.leases}, items per scan {first.scan_items} -> "
        f"{last.scan_items}, RSS {first.rss_mib:.0f} -> {last.rss_mib:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
