"""`python -m processor.kcl`: our routes as an amazon_kclpy record processor, driven through
the real amazon_kclpy KCLProcess by a scripted MultiLang conversation (the messages the Java
MultiLangDaemon sends, as `processor.kclpy_daemon.protocol` writes them for `dsp multilang`).

The route's consumer writes what it receives to a file; a filter keeps only paid orders; a
record that is not a DynamoDB change is dead-lettered. After each batch the processor
checkpoints its last record (the batch is handled: delivered, filtered or dead-lettered);
at the shard's end it checkpoints SHARD_END."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from processor.core.records import StreamRecord
from processor.kclpy_daemon.protocol import checkpoint_reply, encode, parse_line
from processor.sinks.jsonl import read_dead_letters
from processor.testing import kds_payload


def write_seen(records: Sequence[StreamRecord]) -> None:
    """The route's consumer (runs in the child): one line per record."""
    with open(os.environ["DSP_TEST_KCL_SEEN"], "a", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps([record.keys["sk"], record.sequence_number]) + "\n")


def kinesis_record(sequence: str, data: bytes) -> dict[str, Any]:
    return {
        "data": base64.b64encode(data).decode(),
        "partitionKey": "68406A366BD60300C59F519142163A14",
        "sequenceNumber": sequence,
        "approximateArrivalTimestamp": 1721011165891,
        "subSequenceNumber": 0,
        "action": "record",
    }


def order(i: int, status: str) -> bytes:
    keys = {"pk": {"S": "TENANT#acme"}, "sk": {"S": f"ORDER#{i}"}}
    return kds_payload(keys, new_image={**keys, "status": {"S": status}}, table="orders")


class Daemon:
    """The daemon's side of the conversation, on the child's stdin and stdout."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdin is not None
        assert child.stdout is not None
        self.stdin: IO[bytes] = child.stdin
        self.stdout: IO[bytes] = child.stdout
        self.checkpoints: list[Any] = []

    def send(self, message: dict[str, Any]) -> None:
        self.stdin.write(encode(message))
        self.stdin.flush()

    def until_status(self, response_for: str) -> None:
        """Answer checkpoints until the child's status for ``response_for``."""
        while True:
            line = self.stdout.readline()
            assert line, "the child closed its stdout"
            message = parse_line(line)
            if message is None:
                continue
            if message["action"] == "checkpoint":
                self.checkpoints.append(message["sequenceNumber"])
                self.send(checkpoint_reply(message, None))
            elif message["action"] == "status":
                assert message["responseFor"] == response_for, message
                return


def test_kcl_processor_runs_routes_and_checkpoints_each_handled_batch(tmp_path: Path) -> None:
    """Two batches and the shard's end, through amazon_kclpy's own KCLProcess."""
    seen, letters = tmp_path / "seen.jsonl", tmp_path / "dead-letter.jsonl"
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
source = "kinesis"
kinesis_stream = "orders-kds"
[checkpoints]
application = "orders-kcl"
[dead_letter]
path = "{letters}"
[[routes]]
name = "paid"
consumer = "tests.system.test_kcl_processor:write_seen"
filter = '{{"dynamodb": {{"NewImage": {{"status": {{"S": ["paid"]}}}}}}}}'
"""
    )
    env = {**os.environ, "DSP_TEST_KCL_SEEN": str(seen), "AWS_DEFAULT_REGION": "us-east-1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "processor.kcl", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    daemon = Daemon(child)
    try:
        daemon.send({"action": "initialize", "shardId": "shardId-000000000001",
                     "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0})  # fmt: skip
        daemon.until_status("initialize")
        first = [kinesis_record("101", order(1, "paid")), kinesis_record("102", order(2, "new"))]
        daemon.send({"action": "processRecords", "records": first, "millisBehindLatest": 0})
        daemon.until_status("processRecords")
        second = [kinesis_record("103", b"not json"), kinesis_record("104", order(3, "paid"))]
        daemon.send({"action": "processRecords", "records": second, "millisBehindLatest": 0})
        daemon.until_status("processRecords")
        daemon.send({"action": "shardEnded"})
        daemon.until_status("shardEnded")
    finally:
        _, stderr = child.communicate(timeout=30)  # closes the child's stdin: it exits
    assert child.returncode == 0, stderr.decode()[-2000:]
    assert [json.loads(line) for line in seen.read_text().splitlines()] == [
        ["ORDER#1", "101"],
        ["ORDER#3", "104"],
    ]
    assert daemon.checkpoints == ["102", "104", None]  # each batch, then SHARD_END
    (letter,) = read_dead_letters(letters)
    assert letter.record["sequenceNumber"] == "103"
    assert "not JSON" in letter.error_message
