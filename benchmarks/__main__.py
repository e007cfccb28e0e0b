"""`make bench`: every benchmark runs ours and its baseline alternately, several rounds, in one
process, and reports medians and the ratio. The table is printed and written to
benchmarks/results.md."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from benchmarks import (
    batch_writes,
    capacity,
    decode,
    e2e,
    fairness,
    idle,
    lambda_path,
    parallel,
    scale,
    soak_month,
    staleness,
    tenants,
    webhooks,
    whole_process,
)
from benchmarks.pages import page
from processor.process import tune_gc
from processor.testing import moto_process, moto_server

ROUNDS = 7
RESULTS = Path(__file__).with_name("results.md")
#: ours alone, this many runs per capacity scenario: medians and minimums (issue 32)
CAPACITY_ROUNDS = 5


def _time(fn: Callable[[bytes], int], bodies: list[bytes]) -> float:
    started = time.process_time()
    for body in bodies:
        fn(body)
    return time.process_time() - started


def side_by_side(
    name: str, ours: Callable[[bytes], int], baseline: Callable[[bytes], int], bodies: list[bytes]
) -> tuple[str, float, float, float]:
    records = sum(body.count(b'"eventID"') for body in bodies)
    assert ours(bodies[0]) == baseline(bodies[0]), f"{name}: the two paths disagree"
    ours_s, base_s = [], []
    for _ in range(ROUNDS):  # alternate so drift on a shared machine hits both alike
        base_s.append(_time(baseline, bodies))
        ours_s.append(_time(ours, bodies))
    ours_rate = records / statistics.median(ours_s)
    base_rate = records / statistics.median(base_s)
    return name, ours_rate, base_rate, ours_rate / base_rate


def side_by_side_wall(
    name: str, ours: Callable[[], int], baseline: Callable[[], int]
) -> tuple[str, float, float, float]:
    ours_s, base_s = [], []
    records = 0
    for _ in range(3):
        started = time.perf_counter()
        records = baseline()
        base_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        ours()
        ours_s.append(time.perf_counter() - started)
    ours_rate = records / statistics.median(ours_s)
    base_rate = records / statistics.median(base_s)
    return name, ours_rate, base_rate, ours_rate / base_rate


def decode_rows(bodies: list[bytes]) -> list[str]:
    lines = [
        "| decode + route + consumer, records/s per core | ours | boto3 client parse + "
        "TypeDeserializer | ratio | Powertools data classes | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for images, label in (
        (False, "consumer reads keys only"),
        (True, "consumer reads both images"),
    ):
        _, ours, boto, r1 = side_by_side(
            label, decode.ours(images=images), decode.boto3_baseline(images=images), bodies
        )
        _, ours2, power, r2 = side_by_side(
            label, decode.ours(images=images), decode.powertools_baseline(images=images), bodies
        )
        ours_rate = (ours + ours2) / 2
        lines.append(
            f"| {label} | {ours_rate:,.0f} | {boto:,.0f} | {r1:.1f}x | {power:,.0f} | {r2:.1f}x |"
        )
    lines += [
        "",
        "| in Lambda: the event arrives JSON-decoded (no json.loads on either side), records/s "
        "per core | our handler's path | Powertools data classes | ratio |",
        "|---|---:|---:|---:|",
    ]
    for images, label in (
        (False, "consumer reads keys only"),
        (True, "consumer reads both images"),
    ):
        _, ours_l, power_l, r_l = side_by_side(
            label,
            decode.lambda_ours(images=images, bodies=bodies),
            decode.lambda_powertools(images=images, bodies=bodies),
            bodies,
        )
        lines.append(f"| {label} | {ours_l:,.0f} | {power_l:,.0f} | {r_l:.1f}x |")
    lines += [
        "",
        "| decode + route + consumer, records/s per core | Kinesis Data Streams source | "
        "DynamoDB Streams source | ratio |",
        "|---|---:|---:|---:|",
    ]
    for images, label in (
        (False, "consumer reads keys only"),
        (True, "consumer reads both images"),
    ):
        _, kds, ddb, ratio_kds = side_by_side(
            label,
            decode.kinesis_ours(images=images, bodies=bodies),
            decode.ours(images=images),
            bodies,
        )
        lines.append(f"| {label} | {kds:,.0f} | {ddb:,.0f} | {ratio_kds:.2f}x |")
    _, with_tenancy, without, ratio = side_by_side(
        "tenancy", decode.dispatched(tenancy=True), decode.dispatched(tenancy=False), bodies
    )
    lines += [
        "",
        "| through the Dispatcher, keys only, records/s per core | [tenancy] on | off | ratio |",
        "|---|---:|---:|---:|",
        f"| tenant per record (regex on pk, remembered per key value) + per-tenant counts "
        f"| {with_tenancy:,.0f} "
        f"| {without:,.0f} | {ratio:.2f}x |",
    ]
    return lines


def wall_rows() -> list[str]:
    lines = [
        "| benchmark (wall clock) | ours (records/s) | baseline (records/s) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, ours, base, ratio in [
        side_by_side_wall(
            "slow consumer (2 ms/record), 50 keys: parallelism 8 vs 1",
            parallel.dispatch_with(8),
            parallel.dispatch_with(1),
        ),
    ]:
        lines.append(f"| {name} | {ours:,.0f} | {base:,.0f} | {ratio:.1f}x |")
    return lines


def webhook_rows() -> list[str]:
    lines = [
        f"| webhooks, {webhooks.CONCURRENCY} threads, {webhooks.REQUESTS} records | pooled req/s "
        "| new connection req/s | ratio | pooled p50 / p99 ms | new connection p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for tls in (False, True):
        name, f = webhooks.compare(tls=tls)
        lines.append(
            f"| {name} | {f['pooled_rps']:,.0f} | {f['fresh_rps']:,.0f} "
            f"| {f['pooled_rps'] / f['fresh_rps']:.1f}x "
            f"| {f['pooled_p50_ms']:.2f} / {f['pooled_p99_ms']:.2f} "
            f"| {f['fresh_p50_ms']:.2f} / {f['fresh_p99_ms']:.2f} |"
        )
    return lines


def _commit() -> str:
    """The commit measured (with "+changes" when the tree differs from it)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
            check=True, cwd=RESULTS.parent,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
            text=True, check=True, cwd=RESULTS.parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _apart(*sections: Callable[[str], list[str]]) -> list[list[str]]:
    """Sections measured against a moto server in a process of its own (benchmarks.capacity
    says why)."""
    with moto_process() as apart:
        return [section(apart) for section in sections]


def main() -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    tune_gc()  # as `dsp run` does; both sides of every comparison run under it
    bodies = [page(seed) for seed in range(1, 4)]
    with moto_server() as endpoint:
        sections = [
            decode_rows(bodies),
            lambda_path.isolated_rows(),
            webhook_rows(),
            fairness.rows(),
            tenants.rows(),
            wall_rows(),
            batch_writes.rows(endpoint),
            *_apart(capacity.rows, lambda apart: capacity.repeated(apart, CAPACITY_ROUNDS)),
            whole_process.rows(endpoint),
            e2e.rows(endpoint),
            staleness.rows(endpoint),
            scale.rows(endpoint),
            idle.rows(endpoint),
            soak_month.rows(endpoint),
        ]
    table = "\n\n".join("\n".join(section) for section in sections)
    print(table)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    RESULTS.write_text(
        "# Benchmark results\n\n"
        f"Produced by `make bench` on {stamp} at commit {_commit()} "
        f"({platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {_cpu_model()}, {os.cpu_count()} cores). Each row "
        f"runs ours and its baseline alternately in one process, {ROUNDS} rounds, medians. "
        "Decode rows: 3 recorded GetRecords pages of 1,000 records (10 attributes, both "
        "images), CPU time of one core; the route has an eventName filter.\n\n" + table + "\n"
    )
    print(f"\nwritten to {RESULTS}; `python -m benchmarks.publish` puts it in docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
