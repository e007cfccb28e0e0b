"""Cost at rest: the CPU a `dsp run` process spends owning shards that receive nothing.

One process owns N open, empty shards of the stream double (leases in the moto server, the
default poll and lease settings). Once every lease is taken, its CPU time (user + system,
from /proc) is read over a window: CPU seconds per idle shard-hour. The test servers run in
this process, not in the measured one."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks._dsp import cpu_seconds, dsp_on_double, log_events, threads_of
from processor.testing.stream_double import Scenario

WINDOW_S = 20.0


def idle_cost(
    endpoint: str, shards: int, *, window_s: float = WINDOW_S, stream: str = ""
) -> tuple[float, int]:
    """(CPU seconds per idle shard-hour, threads) for one process owning ``shards``;
    ``stream``: more `[stream]` settings."""
    scenario = Scenario.flat(shards, records_per_shard=0, closed=False)
    with dsp_on_double(
        endpoint, scenario, name="idle", stream=stream, checkpoints="lease_scan_interval_s = 0.5"
    ) as (process, log):
        deadline = time.monotonic() + 120
        while _leases_taken(log) < shards:
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the worker did not take every lease"
            time.sleep(0.2)
        time.sleep(5.0)  # every reader backed off to its idle poll interval
        before, started = cpu_seconds(process.pid), time.monotonic()
        time.sleep(window_s)
        used, elapsed = cpu_seconds(process.pid) - before, time.monotonic() - started
        threads = threads_of(process.pid)
    return used / (shards * elapsed / 3600), threads


def _leases_taken(log: Path) -> int:
    return sum(1 for line in log_events(log) if line.get("event") == "lease_taken")


def rows(endpoint: str) -> list[str]:
    lines = [
        f"| cost at rest: one `dsp run` owning N empty shards, {WINDOW_S:.0f} s "
        "| CPU s per idle shard-hour | cores per 1,000 such shards | threads |",
        "|---|---:|---:|---:|",
    ]
    idle = "idle_poll_interval_s = 10.0\nidle_after_s = 1.0"
    for shards, stream, label in (
        (10, "", "10 shards, default polling"),
        (100, "", "100 shards, default polling"),
        (1000, "", "1,000 shards, default polling"),
        (1000, idle, "1,000 shards, `idle_poll_interval_s = 10` (after 1 s idle)"),
    ):
        per_hour, threads = idle_cost(endpoint, shards, stream=stream)
        lines.append(f"| {label} | {per_hour:.2f} | {per_hour * 1000 / 3600:.2f} | {threads} |")
    return lines


if __name__ == "__main__":  # python -m benchmarks.idle
    from processor.testing import moto_server

    with moto_server() as url:
        print("\n".join(rows(url)))
