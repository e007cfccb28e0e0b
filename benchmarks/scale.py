"""One `dsp run` process owning 10, 100 and then 1,000 open shards of the stream double, with
100,000 records spread over them: records/s from the first to the last batch, the process's
peak RSS, and the most threads it ran (sampled from /proc every 20 ms). It stops once every
shard is read to its tip. Leases live in the moto server."""

from __future__ import annotations

import time
from datetime import datetime

from benchmarks._dsp import dsp_on_double, log_events, threads_of
from processor.testing.stream_double import Scenario

RECORDS = 100_000  # in all, spread evenly: the same work at every shard count
SHARDS = (10, 100, 1000)


def run(endpoint: str, shards: int, *, stream: str = "") -> tuple[float, float, int, int]:
    """(records/s, peak RSS in MB, most threads, records) for one process reading ``shards``
    open shards to their tips; ``stream``: more `[stream]` settings."""
    scenario = Scenario.flat(shards, records_per_shard=RECORDS // shards, closed=False)
    threads = 0
    with dsp_on_double(
        endpoint,
        scenario,
        name="scale",
        stream=f"poll_interval_min_s = 0.05\n{stream}",
        args=("--stop-when-idle", "0.5"),
        start_up_s=0,
    ) as (process, log):
        deadline = time.monotonic() + 900
        while process.poll() is None and time.monotonic() < deadline:
            try:
                threads = max(threads, threads_of(process.pid))
            except FileNotFoundError:
                break
            time.sleep(0.02)
        lines = log_events(log)
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


def rows(endpoint: str, shard_counts: tuple[int, ...] = SHARDS) -> list[str]:
    lines = [
        "| one process, N open shards of the stream double, 100,000 records in all "
        "| records | records/s | peak RSS (MB) | most threads |",
        "|---|---:|---:|---:|---:|",
    ]
    for shards in shard_counts:
        rate, rss, threads, records = run(endpoint, shards)
        lines.append(f"| {shards} shards | {records:,} | {rate:,.0f} | {rss:,.0f} | {threads} |")
    return lines


if __name__ == "__main__":  # python -m benchmarks.scale [SHARDS ...]: these rows alone
    import sys

    from processor.testing import moto_server

    with moto_server() as url:
        print("\n".join(rows(url, tuple(int(arg) for arg in sys.argv[1:]) or SHARDS)))
