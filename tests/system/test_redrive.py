"""`dsp dead-letter redrive` delivers fixed records and empties the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from processor.sinks.jsonl import read_dead_letters
from processor.testing import WebhookReceiver, create_table
from tests.system.cli import dsp_with


def test_redrive_delivers_fixed_records_and_empties_the_file(
    tmp_path: Path, endpoint: str, dynamodb: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """Records dead-lettered while the receiver was broken are delivered once it is fixed."""
    source = f"redrive-{unique}"
    create_table(dynamodb, source)
    for i in range(5):
        dynamodb.put_item(TableName=source, Item={"pk": {"S": "a"}, "sk": {"S": str(i)}})
    dead = tmp_path / "dead-letter.jsonl"
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
table = "{source}"
poll_interval_min_s = 0.05
[checkpoints]
table = "leases-{unique}"
application = "redrive-{unique}"
[batch]
max_retries = 0
bisect_on_error = false
[dead_letter]
path = "{dead}"
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/h"
max_attempts = 1
"""
    )
    env = {**os.environ, "DSP_AWS__ENDPOINT_URL": endpoint}

    dsp = dsp_with(config, env, timeout_s=60)

    receiver.script("/h", [500])  # broken
    assert dsp("run", "--stop-when-idle", "0.5").returncode == 0
    assert len(list(read_dead_letters(dead))) == 5
    assert receiver.received("/h") == []

    receiver.script("/h", [200])  # fixed
    result = dsp("dead-letter", "redrive")
    assert result.returncode == 0, result.stderr
    assert "5 delivered" in result.stdout
    assert len(receiver.received("/h")) == 5
    assert not dead.exists() or dead.read_text() == ""
    assert not list(tmp_path.glob("dead-letter.jsonl.redrive-*"))


def test_redrive_keeps_what_fails_again(
    tmp_path: Path, endpoint: str, dynamodb: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """Entries that fail again stay in the file with their new error; exit status is 1."""
    source = f"redrive-{unique}"
    create_table(dynamodb, source)
    dynamodb.put_item(TableName=source, Item={"pk": {"S": "a"}, "sk": {"S": "1"}})
    dead = tmp_path / "dead-letter.jsonl"
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
table = "{source}"
poll_interval_min_s = 0.05
[checkpoints]
table = "leases-{unique}"
application = "redrive-{unique}"
[batch]
max_retries = 0
[dead_letter]
path = "{dead}"
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/h"
max_attempts = 1
"""
    )
    env = {**os.environ, "DSP_AWS__ENDPOINT_URL": endpoint}
    receiver.script("/h", [400])
    run = [sys.executable, "-m", "processor.cli"]
    subprocess.run(
        [*run, "run", "--config", str(config), "--stop-when-idle", "0.5"],
        env=env,
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [*run, "dead-letter", "redrive", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    (entry,) = read_dead_letters(dead)
    assert entry.error_type == "Rejected"
    assert "HTTP 400" in entry.error_message
