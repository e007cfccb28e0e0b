"""One `dsp run` process owning 10 and then 100 shards of the stream double: records/s from
the first to the last batch, and the process's peak RSS. Leases live in the moto server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

from processor.testing.stream_double import Scenario, StreamDouble

RECORDS_PER_SHARD = 300


def noop(records: list[object]) -> None:
    """A consumer that does nothing: the benchmark measures the reader, not a consumer."""


def _run(endpoint: str, shards: int) -> tuple[float, float, int]:
    scenario = Scenario.flat(shards, records_per_shard=RECORDS_PER_SHARD, closed=True)
    unique = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp, StreamDouble(scenario) as double:
        config = Path(tmp) / "dsp.toml"
        config.write_text(
            f"""
[stream]
arn = "{double.stream_arn}"
poll_interval_min_s = 0.05
[checkpoints]
table = "scale-{unique}"
application = "scale"
max_leases = {shards}
[batch]
max_records = 100
[logging]
level = "INFO"
format = "json"
[dead_letter]
path = "{Path(tmp) / "dl.jsonl"}"
[[routes]]
name = "noop"
consumer = "benchmarks.scale:noop"
"""
        )
        env = {
            **os.environ,
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint,
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "processor.cli",
                "run",
                "--config",
                str(config),
                "--stop-when-idle",
                "0.5",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, stderr = process.communicate(timeout=600)
    times = [
        datetime.fromisoformat(line["timestamp"]).timestamp()
        for line in (json.loads(s) for s in stderr.splitlines() if s.startswith("{"))
        if line["event"] == "batch_dispatched"
    ]
    records = shards * RECORDS_PER_SHARD
    span = max(times) - min(times) if len(times) > 1 else float("nan")
    return records / span, _peak_rss_mb(stderr), records


def _peak_rss_mb(stderr: str) -> float:
    for line in reversed(stderr.splitlines()):
        if line.startswith("{") and '"worker_stopped"' in line:
            return float(json.loads(line).get("peak_rss_mb", float("nan")))
    return float("nan")


def rows(endpoint: str) -> list[str]:
    lines = [
        "| one process, N shards of the stream double | records | records/s | peak RSS (MB) |",
        "|---|---:|---:|---:|",
    ]
    for shards in (10, 100):
        rate, rss, records = _run(endpoint, shards)
        lines.append(f"| {shards} shards | {records:,} | {rate:,.0f} | {rss:,.0f} |")
    return lines
