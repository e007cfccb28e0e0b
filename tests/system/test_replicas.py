"""Several `dsp run` processes on one stream (the double): they split the shards, never read
one shard at the same time, and a SIGKILLed replica's shards are taken over without a gap."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from processor.testing import WebhookReceiver
from processor.testing.stream_double import Scenario, StreamDouble

LEASE_TIMEOUT_S = 3.0
POLL_MAX_S = 0.2


def owners(dynamodb: Any, unique: str) -> Counter[str]:
    # not list_tables: its first page holds 100 names, and a full run creates more tables
    try:
        items = dynamodb.query(
            TableName=f"leases-{unique}",
            KeyConditionExpression="application = :a",
            ExpressionAttributeValues={":a": {"S": f"replicas-{unique}"}},
            ConsistentRead=True,
        )["Items"]
    except dynamodb.exceptions.ResourceNotFoundException:  # the first replica creates it
        return Counter()
    return Counter(item["owner"]["S"] for item in items if "owner" in item)


def wait_until(check: Callable[[], bool], timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"condition not met within {timeout_s} s")


@pytest.mark.slow
def test_replicas_split_shards_and_take_over_after_sigkill(
    tmp_path: Path, endpoint: str, dynamodb: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """2 then 3 replicas own 6/6 then 4/4/4; after SIGKILL of one, its shards move within the
    lease timeout plus a poll, and the union of deliveries has every record."""
    scenario = Scenario.flat(12, records_per_shard=3, closed=False)
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
arn = "arn:aws:dynamodb:us-east-1:123456789012:table/double/stream/2026-01-01T00:00:00.000"
poll_interval_min_s = 0.05
poll_interval_max_s = {POLL_MAX_S}
discovery_interval_s = 2
[checkpoints]
table = "leases-{unique}"
application = "replicas-{unique}"
lease_timeout_s = {LEASE_TIMEOUT_S}
renew_interval_s = 0.5
[batch]
max_records = 5
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/r"
concurrency = 1  # stream order within a shard, so interleaving readers would show
"""
    )
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: list[Any] = []
    stop_appending = threading.Event()
    with StreamDouble(scenario) as double:

        def start(name: str) -> None:
            env = {
                **os.environ,
                "DSP_AWS__ENDPOINT_URL": endpoint,
                "DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint,
                "DSP_CHECKPOINTS__OWNER": name,
                "DSP_LOGGING__LEVEL": "WARNING",
            }
            log_file = (tmp_path / f"{name}.log").open("wb")
            logs.append(log_file)
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "processor.cli", "run", "--config", str(config)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )

        def append_forever() -> None:
            for i in itertools.count():
                if stop_appending.wait(0.05):
                    return
                double.append(scenario.shards[i % 12].shard_id, [f"late{i % 5}"])

        appender = threading.Thread(target=append_forever, daemon=True)
        appender.start()
        try:
            start("p1")
            # bounds on waits are generous: a loaded 2-core machine starts Python slowly
            wait_until(lambda: owners(dynamodb, unique) == Counter({"p1": 12}), 120)
            start("p2")
            wait_until(lambda: owners(dynamodb, unique) == Counter({"p1": 6, "p2": 6}), 120)
            start("p3")
            wait_until(lambda: sorted(owners(dynamodb, unique).values()) == [4, 4, 4], 120)

            processes["p3"].send_signal(signal.SIGKILL)
            processes["p3"].wait()
            took = wait_until(lambda: "p3" not in owners(dynamodb, unique), 120)
            print(f"replicas: shards of the SIGKILLed replica taken over after {took:.2f} s")
            # about LEASE_TIMEOUT_S + a lease scan when idle (the figure printed above); the
            # time is measured, not asserted: wait_until's bound only catches a hang
            assert sum(owners(dynamodb, unique).values()) == 12

            stop_appending.set()
            appender.join()
            total = sum(len(s.keys) for s in scenario.shards)
            wait_until(
                lambda: (
                    len({r.headers["Idempotency-Key"] for r in receiver.received("/r")}) >= total
                ),
                120,
            )
        finally:
            stop_appending.set()
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
            for log_file in logs:
                log_file.close()

    assert processes["p1"].returncode == 0
    assert processes["p2"].returncode == 0
    # the union of deliveries has every record of every shard: no gap
    bodies = [r.json() for r in receiver.received("/r")]
    got = {(b["new_image"]["shard"], int(b["sequence_number"])) for b in bodies}
    expected = {(shard, seq) for shard, _, seq in scenario.all_records()}
    assert expected <= got
    # per shard, deliveries never interleave two readers: apart from the restart after the
    # SIGKILL (which goes back to the checkpoint), sequence numbers only grow
    per_shard: dict[str, list[int]] = defaultdict(list)
    for b in bodies:
        per_shard[b["new_image"]["shard"]].append(int(b["sequence_number"]))
    for shard, seqs in per_shard.items():
        restarts = sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        assert restarts <= 1, f"{shard}: {restarts} backwards steps in {seqs}"
