"""Cost at rest: the CPU a `dsp run` process spends owning shards that receive nothing, and
what it costs in latency: how long the first change after a quiet spell takes to arrive.

One process owns N open, empty shards of the stream double (leases in the moto server, the
default poll and lease settings). Once every lease is taken and every shard has slowed to
its idle interval, its CPU time (user + system, from /proc) is read over a window: CPU
seconds per idle shard-hour. `idle_after_s = 1` stands in for the default minute of quiet
(the interval it leads to is the default's). The test servers run in this process, not in
the measured one."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._dsp import cpu_seconds, dsp_on_double, log_events, threads_of
from processor.testing.stream_double import Scenario, StreamDouble

WINDOW_S = 20.0
#: a shard quiet for idle_after_s doubles its wait from poll_interval_max_s (2 s) to the idle
#: interval: 2 + 4 + 8 + 10 s; the measurements start after that
SLOW_DOWN_S = 25.0
#: quiet after 1 s instead of the default 60 (the benchmark would wait a minute for nothing)
QUIET = "idle_after_s = 1.0"
#: the former default: a quiet shard is polled as often as a busy one (every 2 s)
EVERY_2_S = "idle_poll_interval_s = 2.0"
PROBES = 8
STAMPS = "BENCH_IDLE_STAMPS"


def idle_cost(
    endpoint: str,
    shards: int,
    *,
    window_s: float = WINDOW_S,
    stream: str = "",
    env: dict[str, str] | None = None,
) -> tuple[float, int]:
    """(CPU seconds per idle shard-hour, threads) for one process owning ``shards``;
    ``stream``: more `[stream]` settings; ``env``: more environment (`DSP_...`)."""
    scenario = Scenario.flat(shards, records_per_shard=0, closed=False)
    with dsp_on_double(endpoint, scenario, name="idle", stream=stream, env=env) as (process, log):
        _wait_for_leases(process, log, shards)
        time.sleep(SLOW_DOWN_S)  # every reader backed off to its idle poll interval
        before, started = cpu_seconds(process.pid), time.monotonic()
        time.sleep(window_s)
        used, elapsed = cpu_seconds(process.pid) - before, time.monotonic() - started
        threads = threads_of(process.pid)
    return used / (shards * elapsed / 3600), threads


def _leases_taken(log: Path) -> int:
    return sum(1 for line in log_events(log) if line.get("event") == "lease_taken")


def _wait_for_leases(process: subprocess.Popen[bytes], log: Path, shards: int) -> None:
    deadline = time.monotonic() + 180
    while _leases_taken(log) < shards:
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "the worker did not take every lease"
        time.sleep(0.2)


def stamp(records: list[Any]) -> None:
    """A consumer that notes when each record arrived (the first-change probes)."""
    now = time.time()
    with Path(os.environ[STAMPS]).open("a") as stamps:
        stamps.writelines(f"{now!r} {json.dumps(record.keys, default=str)}\n" for record in records)


def first_change_s(endpoint: str, *, stream: str, probes: int = PROBES) -> list[float]:
    """Seconds from a change's arrival in a quiet shard to its consumer, once per shard: each
    probe writes one record to a shard that has been quiet since the start, at a random moment
    of a 20 s span (so at random points of the shards' poll cycles)."""
    scenario = Scenario.flat(probes, records_per_shard=0, closed=False)
    rng = random.Random(32)
    with tempfile.TemporaryDirectory() as tmp, StreamDouble(scenario) as double:
        stamps = Path(tmp) / "stamps"
        stamps.touch()
        with dsp_on_double(
            endpoint, scenario, name="quiet", stream=stream, double=double,
            consumer="benchmarks.idle:stamp", env={STAMPS: str(stamps)},
        ) as (process, log):  # fmt: skip
            _wait_for_leases(process, log, probes)
            time.sleep(SLOW_DOWN_S)
            start, written = time.monotonic(), dict[str, float]()
            for at, shard in sorted((rng.uniform(0, 20), s.shard_id) for s in scenario.shards):
                time.sleep(max(0.0, start + at - time.monotonic()))
                key = f"probe-{shard}"
                double.append(shard, [key])
                written[key] = time.time()
            deadline = time.monotonic() + 60
            while len(stamps.read_text().splitlines()) < probes:
                assert time.monotonic() < deadline, "a probe was not delivered"
                time.sleep(0.05)
            text = stamps.read_text()
    seen: dict[str, float] = {}
    for line in text.splitlines():
        stamped, keys = line.split(" ", 1)
        seen.update({key: float(stamped) for key in written if key in keys})
    return [seen[key] - written[key] for key in written]


def rows(endpoint: str) -> list[str]:
    lines = [
        f"| cost at rest: one `dsp run` owning N empty shards, quiet for longer than "
        f"`idle_after_s`, {WINDOW_S:.0f} s | CPU s per idle shard-hour "
        "| cores per 1,000 such shards | threads |",
        "|---|---:|---:|---:|",
    ]
    for shards, stream, env, label in (
        (10, QUIET, None, "10 shards, the defaults (quiet shards polled every 10 s)"),
        (100, QUIET, None, "100 shards, the defaults"),
        (1000, QUIET, None, "1,000 shards, the defaults"),
        (1000, QUIET, {"DSP_AWS__FAST_PATH": "false"}, "1,000 shards, `aws.fast_path = false`"),
        (
            1000,
            f"{QUIET}\n{EVERY_2_S}",
            None,
            "1,000 shards, quiet shards polled every 2 s (`idle_poll_interval_s = 2`)",
        ),
        (
            1000,
            f"{QUIET}\n{EVERY_2_S}",
            {"DSP_AWS__FAST_PATH": "false"},
            "1,000 shards, both: polled every 2 s, no fast path (the defaults before ADR 0030)",
        ),
    ):
        per_hour, threads = idle_cost(endpoint, shards, stream=stream, env=env)
        lines.append(f"| {label} | {per_hour:.2f} | {per_hour * 1000 / 3600:.2f} | {threads} |")
    lines += [
        "",
        f"| the first change after a quiet spell, {PROBES} quiet shards, one change each "
        "| median s | max s |",
        "|---|---:|---:|",
    ]
    for stream, label in (
        (QUIET, "the defaults: quiet shards polled every 10 s"),
        (f"{QUIET}\n{EVERY_2_S}", "quiet shards polled every 2 s (the former default)"),
    ):
        latencies = first_change_s(endpoint, stream=stream)
        lines.append(f"| {label} | {statistics.median(latencies):.1f} | {max(latencies):.1f} |")
    return lines


if __name__ == "__main__":  # python -m benchmarks.idle
    from processor.testing import moto_server

    with moto_server() as url:
        print("\n".join(rows(url)))
