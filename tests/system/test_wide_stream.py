"""One `dsp run` with default settings on a stream of 150 open shards (the wire double): every
shard is read. On main, checkpoints.max_leases defaulted to 100 and a third of the records
were never delivered, with nothing but a gauge to say so."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from processor.testing import WebhookReceiver
from processor.testing.stream_double import Scenario, StreamDouble
from tests.system.cli import dsp_with


@pytest.mark.slow(seconds=30)
def test_one_process_with_defaults_reads_all_150_shards(
    tmp_path: Path, endpoint: str, receiver: WebhookReceiver, unique: str
) -> None:
    """300 records over 150 shards, default [checkpoints]: all 300 delivered, 150 leases owned."""
    scenario = Scenario.flat(150, records_per_shard=2, closed=False)
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
arn = "arn:aws:dynamodb:us-east-1:123456789012:table/double/stream/2026-01-01T00:00:00.000"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.5
[checkpoints]
table = "leases-{unique}"
application = "wide-{unique}"
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/w"
"""
    )
    with StreamDouble(scenario) as double:
        env: dict[str, Any] = {
            **os.environ,
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint,
            "DSP_LOGGING__LEVEL": "WARNING",
        }
        done = dsp_with(config, env, timeout_s=300)("run", "--stop-when-idle", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shards_unowned" not in done.stderr
    delivered = {(r.json()["sequence_number"]) for r in receiver.received("/w")}
    assert len(delivered) == len(list(scenario.all_records())) == 300
