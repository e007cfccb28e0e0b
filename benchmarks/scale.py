"""One `dsp run` process owning 10, 100 and then 1,000 open shards of the stream double, with
100,000 records spread over them: records/s from the first to the last batch, the process's
peak RSS, and the most threads it ran (sampled from /proc every 20 ms). It stops once every
shard is read to its tip. Leases live in the moto server."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from benchmarks._dsp import dsp_run
from processor.testing.stream_double import Scenario, StreamDouble

RECORDS = 100_000  # in all, spread evenly: the same work at every shard count
SHARDS = (10, 100, 1000)


def noop(records: list[object]) -> None:
    """A consumer that does nothing: the benchmark measures the reader, not a consumer."""


def run(endpoint: str, shards: int, *, stream: str = "") -> tuple[float, float, int, int]:
    """(records/s, peak RSS in MB, most threads, records) for one process reading ``shards``
    open shards to their tips; ``stream``: more `[stream]` settings."""
    scenario = Scenario.flat(shards, records_per_shard=RECORDS // shards, closed=False)
    unique = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp, StreamDouble(scenario) as double:
        config = f"""
[stream]
arn = "{double.stream_arn}"
poll_interval_min_s = 0.05
{stream}
[checkpoints]
table = "scale-{unique}"
application = "scale"
max_leases = {shards}
[batch]
max_records = 100
[logging]
level = "INFO"
format = "json"
[[routes]]
name = "noop"
consumer = "benchmarks.scale:noop"
"""
        log = Path(tmp) / "stderr.log"
        streams = {"DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint}
        threads = 0
        args = ("--stop-when-idle", "0.5")
        with dsp_run(endpoint, config, env=streams, stderr=log, args=args, start_up_s=0) as process:
            deadline = time.monotonic() + 900
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    threads = max(threads, len(os.listdir(f"/proc/{process.pid}/task")))
                except FileNotFoundError:
                    break
                time.sleep(0.02)
        lines = [json.loads(s) for s in log.read_text().splitlines() if s.startswith("{")]
    times = [
        datetime.fromisoformat(line["timestamp"]).timestamp()
        for line in lines
        if line["event"] == "batch_dispatched"
    ]
    records = shards * (RECORDS // shards)
    span = max(times) - min(times) if len(times) > 1 else float("nan")
    stopped = [line for line in lines if line["event"] == "worker_stopped"]
    rss = float(stopped[-1].get("peak_rss_mb", "nan")) if stopped else float("nan")
    read = int(stopped[-1].get("records_read", 0)) if stopped else 0
    assert read == records, f"read {read} of {records} records"
    return records / span, rss, threads, records


def rows(endpoint: str) -> list[str]:
    lines = [
        "| one process, N open shards of the stream double, 100,000 records in all "
        "| records | records/s | peak RSS (MB) | most threads |",
        "|---|---:|---:|---:|---:|",
    ]
    for shards in SHARDS:
        rate, rss, threads, records = run(endpoint, shards)
        lines.append(f"| {shards} shards | {records:,} | {rate:,.0f} | {rss:,.0f} | {threads} |")
    return lines


if __name__ == "__main__":  # python -m benchmarks.scale [SHARDS ...]: these rows alone
    import sys

    from processor.testing import moto_server

    counts = [int(arg) for arg in sys.argv[1:]] or list(SHARDS)
    with moto_server() as moto_endpoint:
        for count in counts:
            rate_, rss_, threads_, records_ = run(moto_endpoint, count)
            print(f"| {count} shards | {records_:,} | {rate_:,.0f} | {rss_:,.0f} | {threads_} |")
