"""A month of rollovers in a minute (issue 28): two `dsp run` replicas on a stream whose four
lineages roll over every 1.5 s and whose closed shards leave it 9 s later, over 33
generations, with one replica SIGKILLed and restarted midway.

* every record is delivered, each key's changes in order (first deliveries: the SIGKILL
  repeats a suffix, which is at-least-once);
* the lease table at the end holds at most 3x the shards the stream still lists, plus a small
  constant (without cleanup it holds every shard ever created: 152 for 28 listed);
* the surviving replica's RSS grows less than 25 % after warm-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from processor.testing import WebhookReceiver
from processor.testing.stream_double import Scenario, StreamDouble

pytestmark = [pytest.mark.system, pytest.mark.slow(seconds=80)]

ROLLOVER_S = 1.5
RETENTION_S = 9.0
WRITE_S = 50.0  # 33 generations
KEYS = [f"k{i}" for i in range(16)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def lease_count(dynamodb: Any, table: str, application: str) -> int:
    answer = dynamodb.query(
        TableName=table,
        KeyConditionExpression="application = :a",
        ExpressionAttributeValues={":a": {"S": application}},
        Select="COUNT",
        ConsistentRead=True,
    )
    return int(answer["Count"])


def test_two_replicas_and_a_sigkill_through_33_generations(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    scenario = Scenario.rolling(lineages=4, rollover_s=ROLLOVER_S, retention_s=RETENTION_S)
    table, application = f"month-{unique}", f"month-{unique}"
    with WebhookReceiver() as receiver, StreamDouble(scenario) as double:
        config = tmp_path / "dsp.toml"
        config.write_text(
            f"""
[stream]
arn = "{double.stream_arn}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.2
discovery_interval_s = 1
[checkpoints]
table = "{table}"
application = "{application}"
lease_timeout_s = 3
renew_interval_s = 0.5
lease_scan_interval_s = 0.5
cleanup_interval_s = 1
[batch]
max_records = 20
[dead_letter]
path = "{tmp_path / "dead-letters.jsonl"}"
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/changes"
"""
        )
        env = {
            **os.environ,
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint,
            "DSP_LOGGING__LEVEL": "WARNING",
        }

        def replica(name: str) -> subprocess.Popen[bytes]:
            with (tmp_path / f"{name}.log").open("wb") as log:
                return subprocess.Popen(
                    [sys.executable, "-m", "processor.cli", "run", "--config", str(config)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )

        written: dict[str, list[int]] = {key: [] for key in KEYS}
        done = threading.Event()

        def write() -> None:
            n = 0
            stop_at = time.monotonic() + WRITE_S
            while time.monotonic() < stop_at:
                key = KEYS[n % len(KEYS)]
                written[key].append(double.write(key))
                n += 1
                time.sleep(0.025)  # 40 changes a second
            done.set()

        writer = threading.Thread(target=write)
        survivor, doomed = replica("a"), replica("b")
        writer.start()
        try:
            time.sleep(12)  # warm-up: both replicas hold leases and have cleaned up
            rss_warm = rss_kib(survivor.pid)
            time.sleep(8)
            doomed.send_signal(signal.SIGKILL)  # leases held, batches and cleanup in flight
            doomed.wait()
            time.sleep(5)
            restarted = replica("c")
            writer.join()
            expected = {f"{seq:x}" for seqs in written.values() for seq in seqs}
            deadline = time.monotonic() + 30
            while True:
                delivered = {r.json()["event_id"] for r in receiver.received()}
                missing = expected - delivered
                if not missing:
                    break
                assert time.monotonic() < deadline, f"{len(missing)} records never delivered"
                time.sleep(0.2)
            time.sleep(2 * RETENTION_S / 3)  # a few more cleanup passes on a quiet stream
            rss_end = rss_kib(survivor.pid)
            leases = lease_count(dynamodb, table, application)
            listed = len(scenario.shards)
            generations = double.generation
            departed = len(double.departed)
        finally:
            done.set()
            writer.join(timeout=60)
            for process in (survivor, doomed, locals().get("restarted")):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            codes = [survivor.wait(timeout=60), restarted.wait(timeout=60)]
        received = [r.json() for r in receiver.received()]
    assert codes == [0, 0], (tmp_path / "a.log").read_text()[-3000:]
    assert generations >= 30
    # every record, each key's first deliveries in stream order
    order: dict[str, list[int]] = {}
    seen: set[str] = set()
    for body in received:
        if body["event_id"] in seen:
            continue
        seen.add(body["event_id"])
        key = body["keys"]["pk"]
        order.setdefault(key, []).append(int(body["event_id"], 16))
    assert order == {key: seqs for key, seqs in written.items() if seqs}
    # the lease table follows the live stream, not its history
    shards_ever = listed + departed
    assert leases <= 3 * listed + 8, (leases, listed, shards_ever)
    assert shards_ever > 4 * leases
    print(
        f"leases {leases} for {listed} listed, {shards_ever} ever; RSS {rss_warm} -> {rss_end} KiB"
    )
    assert rss_end < 1.25 * rss_warm, (rss_warm, rss_end)
