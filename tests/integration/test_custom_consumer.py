"""A `package.module:callable` route, run by the real worker against the moto server."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from processor.app import build_app
from processor.settings import load_settings
from processor.testing import create_table

from . import transforms


def test_custom_callable_receives_filtered_batches_in_stream_order(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """The callable gets lists of StreamRecords its filter accepts, in order, each once."""
    source = f"custom-{unique}"
    create_table(dynamodb, source)
    for i in range(12):
        dynamodb.put_item(TableName=source, Item={"pk": {"S": "a"}, "sk": {"S": f"{i:02d}"}})
    dynamodb.delete_item(TableName=source, Key={"pk": {"S": "a"}, "sk": {"S": "00"}})
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
table = "{source}"
poll_interval_min_s = 0.05
[checkpoints]
table = "leases-{unique}"
application = "custom-{unique}"
[batch]
max_records = 5
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "inserts"
consumer = "tests.integration.transforms:collect"
filter = '{{"eventName": ["INSERT"]}}'
"""
    )
    settings = load_settings(config, environ={"DSP_AWS__ENDPOINT_URL": endpoint})
    transforms.COLLECTED.clear()
    app = build_app(settings)
    app.worker.run(stop=threading.Event(), stop_when_idle=0.5)
    app.close()
    batches = transforms.COLLECTED
    assert all(1 <= len(batch) <= 5 for batch in batches)
    flat = [r for batch in batches for r in batch]
    assert [r.keys["sk"] for r in flat] == [f"{i:02d}" for i in range(12)]
    assert all(r.event_name.value == "INSERT" for r in flat)
    assert app.stats["inserts"]["filtered"] == 1
