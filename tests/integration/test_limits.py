"""Items at DynamoDB's limits flow end to end through `dsp run`: mirrored exactly and announced."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from processor.core.dead_letters import DeadLetter
from processor.sinks.jsonl import read_dead_letters
from processor.testing import WebhookReceiver, create_table, scan_all
from tests.conftest import BACKEND

#: just under 400,000 bytes: DynamoDB's documented 400 KB (moto refuses items over 405,000)
BIG = 400_000 - 100


CONFIG = """
[stream]
table = "{source}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.1
[checkpoints]
table = "leases-{unique}"
application = "limits-{unique}"
[dead_letter]
path = "{tmp}/dead.jsonl"
[[routes]]
name = "mirror"
consumer = "batch_write"
[routes.options]
table = "{mirror}"
[[routes]]
name = "notify"
consumer = "webhook"
[routes.options]
url = "{url}/limits"
"""


def mirror_and_announce(
    tmp_path: Path, endpoint: str, *, source: str, mirror: str, unique: str, url: str
) -> list[DeadLetter]:
    """`dsp run --stop-when-idle` mirroring ``source`` and POSTing it; the dead letters."""
    config = tmp_path / "dsp.toml"
    text = CONFIG.format(source=source, unique=unique, mirror=mirror, tmp=tmp_path, url=url)
    config.write_text(text)
    command = [sys.executable, "-m", "processor.cli", "run", "--config", str(config)]
    run = subprocess.run(
        [*command, "--stop-when-idle", "1"],
        env={**os.environ, "DSP_AWS__ENDPOINT_URL": endpoint},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    letters = tmp_path / "dead.jsonl"
    return list(read_dead_letters(letters)) if letters.exists() else []


def nested(depth: int) -> dict[str, Any]:
    """A map nested ``depth`` levels deep (DynamoDB allows 32)."""
    node: dict[str, Any] = {"S": "bottom"}
    for level in range(depth - 1):
        node = {"M": {f"l{level}": node}}
    return node


ITEMS = [
    {"pk": {"S": "big"}, "sk": {"S": "1"}, "blob": {"S": "x" * (BIG)}},
    {"pk": {"S": "deep"}, "sk": {"S": "1"}, "tree": nested(32)},
    {
        "pk": {"S": "numbers"},
        "sk": {"S": "1"},
        "n38": {"N": "12345678901234567890123456789012345678"},
        "tiny": {"N": "-1E-130"},
        "huge": {"N": "9.9999999999999999999999999999999999999E+125"},
        "ns": {"NS": ["1", "1E+100", "0.5"]},
    },
    {
        "pk": {"S": "binary"},
        "sk": {"S": "1"},
        "b": {"B": bytes(range(256))},
        "bs": {"BS": [b"\x00", b"\xff\xfe"]},
        "empty_s": {"S": ""},
        "empty_b": {"B": b""},
        "empty_l": {"L": []},
        "null": {"NULL": True},
    },
]


def test_items_at_the_limits_are_mirrored_and_announced(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str, receiver: WebhookReceiver
) -> None:
    """400 KB, 32 levels, 38-digit and extreme numbers, binary and empty values: the mirror
    equals the source and each change is POSTed once with exact values."""
    source, mirror = f"limits-{unique}", f"limits-mirror-{unique}"
    create_table(dynamodb, source)
    create_table(dynamodb, mirror, stream_view=None)
    for item in ITEMS:
        dynamodb.put_item(TableName=source, Item=item)
    letters = mirror_and_announce(
        tmp_path, endpoint, source=source, mirror=mirror, unique=unique, url=receiver.url
    )
    assert letters == []

    def by_key(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {i["pk"]["S"]: i for i in items}

    assert by_key(scan_all(dynamodb, mirror)) == by_key(scan_all(dynamodb, source))
    bodies = {r.json()["keys"]["pk"]: r.json() for r in receiver.received("/limits")}
    assert set(bodies) == {"big", "deep", "numbers", "binary"}
    assert len(bodies["big"]["new_image"]["blob"]) == BIG
    node = bodies["deep"]["new_image"]["tree"]
    for level in reversed(range(31)):
        node = node[f"l{level}"]
    assert node == "bottom"
    numbers = bodies["numbers"]["new_image"]
    raw = next(r.body for r in receiver.received("/limits") if b'"numbers"' in r.body)
    assert b"12345678901234567890123456789012345678" in raw  # exact, not a float
    assert Decimal(str(numbers["tiny"])) == Decimal("-1E-130")
    binary = bodies["binary"]["new_image"]
    assert binary["empty_s"] == ""
    assert binary["empty_l"] == []


def test_an_empty_map_is_mirrored_or_dead_lettered_at_once_by_backend(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str, receiver: WebhookReceiver
) -> None:
    """DynamoDB (and moto) stream an empty map as {"M": {}}, mirrored like any value.
    DynamoDB Local streams it as {} (docs/dynamodb-local.md): a malformed value, so the
    record is dead-lettered whole on its first attempt, with the attribute named, never
    retried in vain."""
    source, mirror = f"emptymap-{unique}", f"emptymap-mirror-{unique}"
    create_table(dynamodb, source)
    create_table(dynamodb, mirror, stream_view=None)
    item = {"pk": {"S": "m"}, "sk": {"S": "1"}, "empty_m": {"M": {}}}
    dynamodb.put_item(TableName=source, Item=item)
    letters = mirror_and_announce(
        tmp_path, endpoint, source=source, mirror=mirror, unique=unique, url=receiver.url
    )
    if BACKEND == "dynamodb-local":
        assert sorted(entry.route for entry in letters) == ["mirror", "notify"]
        assert all(entry.attempts == 1 for entry in letters)
        assert all(
            "empty_m" in entry.error_message or "malformed" in entry.error_message
            for entry in letters
        )
        assert scan_all(dynamodb, mirror) == []
    else:
        assert letters == []
        assert scan_all(dynamodb, mirror) == [item]
        (body,) = [r.json() for r in receiver.received("/limits")]
        assert body["new_image"]["empty_m"] == {}
