"""Tumbling windows through a SIGKILL (issue 33, item 1): `dsp run` counts records per key per
10 s window on two shard generations of the stream double; it is killed in the middle of a
window and started again. Each window's final aggregate is exact: the state was written with
the checkpoint, so the records read again after the restart are not counted twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from processor.testing.stream_double import Scenario, StreamDouble

pytestmark = [pytest.mark.system, pytest.mark.slow(seconds=30)]

WINDOW_S = 10


def test_a_sigkill_in_the_middle_of_a_window_counts_nothing_twice(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    scenario = Scenario.tree(generations=2, fanout=1, records_per_shard=60, keys=4)
    scenario.created = float(int(time.time() // 3600 * 3600) - 3600)  # an hour ago, aligned
    out = tmp_path / "windows.jsonl"
    with StreamDouble(scenario) as double:
        config = tmp_path / "dsp.toml"
        config.write_text(
            f"""
[stream]
arn = "{double.stream_arn}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.2
[checkpoints]
table = "windows-{unique}"
application = "windows-{unique}"
lease_timeout_s = 3
renew_interval_s = 0.5
[batch]
max_records = 3
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "per-key"
consumer = "tests.system.window_consumer:count"
tumbling_window_s = {WINDOW_S}
"""
        )
        env = {
            **os.environ,
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint,
            "WINDOW_OUT": str(out),
        }

        def dsp(*args: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "processor.cli", "run", "--config", str(config), *args],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

        first = dsp()
        deadline = time.monotonic() + 60
        while not out.exists() or len(out.read_text().splitlines()) < 3:
            assert first.poll() is None, "the first run ended early"
            assert time.monotonic() < deadline, "no window closed"
            time.sleep(0.05)
        time.sleep(0.12)  # inside the next window: some of its records are counted
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_after = len(out.read_text().splitlines())
        second = dsp("--stop-when-idle", "2")
        assert second.wait(timeout=90) == 0

    expected: dict[tuple[str, float], Counter[str]] = {}
    for shard in scenario.shards:
        for index, key in enumerate(shard.keys):
            start = (scenario.created + index) // WINDOW_S * WINDOW_S
            expected.setdefault((shard.shard_id, start), Counter())[key] += 1
    emitted: dict[tuple[str, float], Counter[str]] = {}
    for line in out.read_text().splitlines():
        item = json.loads(line)
        emitted[(item["shard"], item["start"])] = Counter(item["counts"])  # the last one wins
    assert killed_after < len(expected)  # the kill did land before the end
    assert emitted == expected
