"""SIGTERM during a slow consumer: finish the batch, checkpoint, release, exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from processor.testing import WebhookReceiver, create_table


def test_sigterm_finishes_the_batch_checkpoints_and_releases(
    tmp_path: Path, endpoint: str, dynamodb: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """The in-flight batch completes, its checkpoint lands, the lease is freed, exit is 0."""
    source = f"slow-{unique}"
    create_table(dynamodb, source)
    for i in range(6):  # six changes of one item: delivered one at a time, in order
        dynamodb.put_item(
            TableName=source, Item={"pk": {"S": "a"}, "sk": {"S": "0"}, "n": {"N": str(i)}}
        )
    receiver.script("/slow", [200], delay_s=0.4)
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
table = "{source}"
poll_interval_min_s = 0.05
[checkpoints]
table = "leases-{unique}"
application = "stop-{unique}"
lease_timeout_s = 10
renew_interval_s = 2
[batch]
max_records = 3
[shutdown]
deadline_s = 10
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/slow"
"""
    )
    env = {**os.environ, "DSP_AWS__ENDPOINT_URL": endpoint, "DSP_LOGGING__FORMAT": "json"}
    process = subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.wait_for(1, timeout_s=90, path="/slow"), "the worker never delivered"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    # the in-flight batch finished before the shutdown deadline (10 s), rather than being cut
    # at it: no reader outlived the drain, and the worker logged its stop (not timed, so a
    # loaded machine cannot break it)
    events = [json.loads(line).get("event") for line in stderr.splitlines() if line.startswith("{")]
    assert "worker_stopped" in events
    assert "reader_did_not_stop" not in events
    delivered = len(receiver.received("/slow"))
    assert delivered == 3, "exactly the in-flight batch of three is finished"

    (lease,) = dynamodb.query(
        TableName=f"leases-{unique}",
        KeyConditionExpression="application = :a",
        ExpressionAttributeValues={":a": {"S": f"stop-{unique}"}},
        ConsistentRead=True,
    )["Items"]
    assert "owner" not in lease, "the lease is released for a successor"
    third = sorted(r.json()["sequence_number"] for r in receiver.received("/slow"))[-1]
    assert lease["checkpoint"]["S"] == third
