"""Soak (issue 15): everything that goes wrong on a bad day, at once, bounded in time.

Three workers share a stream of 9 shards in two generations (3 roots, each split in two),
served by the wire-level stream double. Meanwhile the webhook receiver flaps (503 for a
moment, every second or so), two tenants' records are poison (their receiver answers 400),
`dsp dead-letter redrive` runs again and again beside the workers, which all append to one
dead-letter file, and one worker is SIGKILLed mid-run. At the end one poison tenant is fixed
and a last redrive runs. Then:

* every record is either delivered or in the dead-letter file;
* the dead-letter view holds each record at most once, and only the still-poison tenant's;
* for every key, deliveries (first occurrence of each record) are in stream order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from processor.testing import WebhookReceiver
from processor.testing.stream_double import Scenario, StreamDouble

pytestmark = [pytest.mark.soak, pytest.mark.slow]

POISON = ("3", "7")  # tenants (item keys k3, k7) whose receiver refuses every record
FIXED = "3"  # fixed before the last redrive
WRITE_S = 20.0  # how long changes keep coming


def _letters(path: Path, *, claimed: bool = False) -> list[str]:
    """Event ids in the dead-letter file (and, with ``claimed``, in the copies a running
    redrive holds: those letters are in the destination too, only being worked on)."""
    files = [path, *sorted(path.parent.glob(path.name + ".redrive-*"))] if claimed else [path]
    ids = []
    for file in files:
        try:
            text = file.read_text()
        except FileNotFoundError:  # renamed or removed by a redrive meanwhile
            continue
        for line in text.splitlines():
            try:
                ids.append(json.loads(line)["record"]["eventID"])
            except ValueError:
                if not claimed:  # everything stopped: every line must be whole
                    raise
                # a writer is appending this very line: it is counted on the next look
    return ids


def test_soak_three_workers_flapping_receiver_poison_redrive_and_a_sigkill(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    scenario = Scenario.tree(generations=2, fanout=2, roots=3, records_per_shard=40, keys=12)
    scenario.created = time.time()  # written now: within the stream's 24 h retention
    dead_letters = tmp_path / "dead-letters.jsonl"
    with WebhookReceiver() as receiver, StreamDouble(scenario) as double:
        for tenant in POISON:
            receiver.script(f"/t/{tenant}", [400])
        config = tmp_path / "dsp.toml"
        config.write_text(
            f"""
[stream]
arn = "{double.stream_arn}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.2
discovery_interval_s = 1
[checkpoints]
table = "soak-{unique}"
application = "soak-{unique}"
lease_timeout_s = 3
renew_interval_s = 0.5
[batch]
max_records = 10
[tenancy]
attribute = "pk"
pattern = "^k(?P<tenant>[0-9]+)$"
[dead_letter]
path = "{dead_letters}"
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/t/{{tenant}}"
max_attempts = 4
base_delay_s = 0.05
max_delay_s = 0.3
breaker_threshold = 5
breaker_cool_down_s = 0.5
"""
        )
        env = {
            **os.environ,
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint,
            "DSP_LOGGING__LEVEL": "ERROR",
        }

        def dsp(*args: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "processor.cli", *args, "--config", str(config)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        done = threading.Event()
        writing = threading.Event()

        def write() -> None:
            """Changes keep coming to the open (second-generation) shards, each key in the
            one shard that owns it, for WRITE_S seconds."""
            leaves = [shard for shard in scenario.shards if not shard.closed]
            owned = {shard.shard_id: sorted(set(shard.keys)) for shard in leaves}
            n = 0
            stop_at = time.monotonic() + WRITE_S
            while time.monotonic() < stop_at and not done.is_set():
                for shard in leaves:
                    keys = owned[shard.shard_id]
                    shard.keys.append(keys[n % len(keys)])
                n += 1
                time.sleep(0.05)
            writing.set()

        def flap() -> None:
            while not done.wait(1.0):
                receiver.down_status = 503
                time.sleep(0.25)
                receiver.down_status = None

        redrives = Counter[int]()

        def redrive_again_and_again() -> None:
            while not done.wait(0.5):
                process = dsp("dead-letter", "redrive")
                redrives[process.wait(timeout=60)] += 1

        background = [
            threading.Thread(target=write),
            threading.Thread(target=flap),
            threading.Thread(target=redrive_again_and_again),
        ]
        workers = [dsp("run") for _ in range(3)]
        for thread in background:
            thread.start()

        def expected() -> dict[str, tuple[str, int]]:
            """event id -> (key, sequence number), of every record written so far"""
            return {
                f"{shard.sequence(index):x}": (key, shard.sequence(index))
                for shard in scenario.shards
                for index, key in enumerate(list(shard.keys))
            }

        def accounted() -> set[str]:
            delivered = {r.json()["event_id"] for r in receiver.received()}
            return delivered | set(_letters(dead_letters, claimed=True))

        try:
            deadline = time.monotonic() + 120
            time.sleep(WRITE_S / 2)
            workers[0].send_signal(signal.SIGKILL)  # mid-run, leases held, batches in flight
            workers[0].wait()
            while not writing.is_set() or set(expected()) - accounted():
                left = len(set(expected()) - accounted())
                assert time.monotonic() < deadline, f"{left} records neither delivered nor dead"
                time.sleep(0.2)
        finally:
            done.set()
            for thread in background:
                thread.join(timeout=90)
            receiver.down_status = None
            for worker in workers[1:]:
                worker.send_signal(signal.SIGTERM)
            codes = [worker.wait(timeout=60) for worker in workers[1:]]
        assert codes == [0, 0]
        assert sum(redrives.values()) >= 3, redrives  # redrives did run beside the workers
        receiver.script(f"/t/{FIXED}", [200])
        final = dsp("dead-letter", "redrive")
        assert final.wait(timeout=60) == 1  # the still-poison tenant's letters failed again

        received = [r.json() for r in receiver.received()]
        statuses = Counter(status for _, status in receiver.attempts)
        written = expected()
    assert statuses[503] > 0  # the receiver did flap while records were going out
    assert statuses[400] > 0
    assert len(written) > 2000
    delivered = {body["event_id"] for body in received}
    letters = _letters(dead_letters)
    # every record delivered or dead-lettered
    assert set(written) <= delivered | set(letters)
    # the dead-letter view: each record once, only the still-poison tenant's, all of them
    assert len(letters) == len(set(letters)), Counter(letters).most_common(3)
    still_poison = {e for e, (key, _) in written.items() if key == f"k{POISON[1]}"}
    assert set(letters) == still_poison
    assert not delivered & still_poison
    assert {e for e, (key, _) in written.items() if key == f"k{FIXED}"} <= delivered
    # per-key order of delivered records (redelivery after the SIGKILL repeats a suffix)
    first: dict[str, list[int]] = {}
    seen: set[str] = set()
    redriven = {e for e, (key, _) in written.items() if key in {f"k{t}" for t in POISON}}
    for body in received:
        event_id = body["event_id"]
        if event_id in seen or event_id in redriven:
            continue
        seen.add(event_id)
        key, sequence = written[event_id]
        first.setdefault(key, []).append(sequence)
    for key, sequences in first.items():
        assert sequences == sorted(sequences), key
