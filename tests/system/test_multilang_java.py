"""Cross-check `dsp multilang` against the real Java KCL MultiLangDaemon (issue 17).

The daemon comes from the kclpy-ext wheel's jars (KCL 3.1.3). It reads a moto Kinesis stream,
served over h2c by hypercorn because the Java SDK's Kinesis client speaks HTTP/2 only. It
drives the same child that the dsp test drives: `tee.py` around the amazon_kclpy v3 recorder.
Both conversations are compared message by message, from `initialize` through two batches
with their checkpoints: the same actions in the same order, each daemon message with the
same fields in the same order and of the same JSON types. The data differs, of course: a
Kinesis record against a DynamoDB stream record.

Without a Java runtime the test is skipped with the reason, which `-ra` prints. Debian's
`default-jre-headless` provides one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import amazon_kclpy
import boto3
import pytest

from processor.sinks.jsonl import read_dead_letters
from processor.testing import create_table
from tests.system.cli import dsp_with

from .test_kcl_processor import order
from .test_multilang import RECORDER, TEE, events, multilang, properties, write_items

JARS = Path(amazon_kclpy.__file__).parent / "jars"
MOTO_APP = """
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

app = DomainDispatcherApplication(create_backend_app)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aws_client(service: str, endpoint: str) -> Any:
    """A client of the h2c moto (the test credentials are explicit: no fixture set them)."""
    make: Any = boto3.client  # any service name (the stubs want a literal)
    return make(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def java_or_skip() -> str:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no Java runtime (apt-get install default-jre-headless): cross-check not run")
    return java


def h2c_moto(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto served over h2c by hypercorn (the Java SDK's Kinesis client speaks HTTP/2 only),
    answering; (the server process, its endpoint)."""
    (tmp_path / "motoapp.py").write_text(MOTO_APP)
    port = free_port()
    h2c = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "motoapp:app"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    kinesis = aws_client("kinesis", h2c)
    while True:
        try:
            kinesis.list_streams()
            return server, h2c
        except Exception:
            if time.monotonic() > deadline:
                server.terminate()
                raise AssertionError("hypercorn did not start") from None
            time.sleep(0.2)


def java_daemon(
    java: str,
    properties_file: Path,
    output: Any,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The KCL MultiLangDaemon from the kclpy-ext jars, on a properties file (it starts its
    child processes in ``cwd``)."""
    return subprocess.Popen(
        [
            java,
            "-Daws.cborEnabled=false",
            "-cp",
            f"{JARS}/*",
            "software.amazon.kinesis.multilang.MultiLangDaemon",
            "--properties-file",
            str(properties_file),
        ],
        env={**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=output,
        cwd=cwd,
    )


def daemon_properties(child: str, stream: str, application: str, h2c: str) -> str:
    return "\n".join(
        [
            f"executableName = {child}",
            f"streamName = {stream}",
            f"applicationName = {application}",
            "regionName = us-east-1",
            "initialPositionInStream = TRIM_HORIZON",
            f"kinesisEndpoint = {h2c}",
            f"dynamoDBEndpoint = {h2c}",
            "retrievalMode = POLLING",
            "metricsLevel = NONE",
            "maxRecords = 4",
            "idleTimeBetweenReadsInMillis = 500",
            "AWSCredentialsProvider = DefaultCredentialsProvider",
        ]
    )


def conversation(log: Path, until_batches: int) -> list[tuple[str, dict[str, Any]]]:
    """(direction, message) from the wire log, up to the status of the N-th batch."""
    out: list[tuple[str, dict[str, Any]]] = []
    done = 0
    for line in log.read_text().splitlines():
        if not line[2:].startswith("{"):
            continue
        message = json.loads(line[2:])
        out.append((line[0], message))
        if message.get("action") == "status" and message.get("responseFor") == "processRecords":
            done += 1
            if done == until_batches:
                break
    return out


def batches_answered(log: Path) -> int:
    return sum(
        1
        for direction, message in conversation(log, 99)
        if direction == "<" and message.get("responseFor") == "processRecords"
    )


def shape(value: Any) -> Any:
    """The JSON structure without the data: field names in order, and types."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


@pytest.mark.slow(seconds=120)
@pytest.mark.moto_only(reason="the Java daemon reads moto's Kinesis")
def test_our_conversation_matches_the_java_multilang_daemon(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    java = java_or_skip()
    daemon: subprocess.Popen[bytes] | None = None
    java_output = (tmp_path / "java.log").open("wb")
    java_log, java_seen = tmp_path / "java-wire.log", tmp_path / "java-seen.jsonl"
    server, h2c = h2c_moto(tmp_path)
    try:
        kinesis = aws_client("kinesis", h2c)
        kinesis.create_stream(StreamName="cross", ShardCount=1)
        for i in range(6):
            kinesis.put_record(
                StreamName="cross", Data=f'{{"n":{i}}}'.encode(), PartitionKey=f"k{i}"
            )
        child = f"{sys.executable} {TEE} {java_log} -- {sys.executable} {RECORDER} 3 {java_seen}"
        java_properties = tmp_path / "java.properties"
        java_properties.write_text(daemon_properties(child, "cross", f"java-{unique}", h2c))
        daemon = java_daemon(java, java_properties, java_output)
        deadline = time.monotonic() + 240  # KCL 3 takes a minute to assign its first lease
        while not java_log.exists() or batches_answered(java_log) < 2:
            assert daemon.poll() is None, (tmp_path / "java.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Java daemon did not get through two batches"
            time.sleep(0.5)
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
        java_output.close()
        server.terminate()
        server.wait(timeout=30)

    # the same child under dsp multilang, on a DynamoDB stream with 6 changes
    table = f"cross-{unique}"
    create_table(dynamodb, table)
    write_items(dynamodb, table, 0, 6)
    ours_log, ours_seen = tmp_path / "ours-wire.log", tmp_path / "ours-seen.jsonl"
    props = properties(
        tmp_path,
        f"{sys.executable} {TEE} {ours_log} -- {sys.executable} {RECORDER} 3 {ours_seen}",
        unique,
        tableName=table,
    )
    done = multilang(tmp_path, props, {"AWS_ENDPOINT_URL": endpoint})
    assert done.returncode == 0, done.stderr[-3000:]

    theirs, ours = conversation(java_log, 2), conversation(ours_log, 2)
    assert [(d, m["action"]) for d, m in ours] == [(d, m["action"]) for d, m in theirs]
    for (direction, mine), (_, java_message) in zip(ours, theirs, strict=True):
        if direction == ">":  # what the daemon says: identical structure
            assert shape(mine) == shape(java_message), (mine, java_message)
    assert ours[0][1]["sequenceNumber"] == theirs[0][1]["sequenceNumber"] == "TRIM_HORIZON"
    replies = [m for d, m in ours + theirs if d == ">" and m["action"] == "checkpoint"]
    assert all(r["error"] is None for r in replies)
    assert len([e for e in events(java_seen) if e["event"] == "record"]) >= 6


@pytest.mark.slow(seconds=120)
@pytest.mark.moto_only(reason="the Java daemon reads moto's Kinesis")
def test_the_java_multilang_daemon_runs_our_routes_through_processor_kcl(
    tmp_path: Path, unique: str
) -> None:
    """The stock KCL (Java MultiLangDaemon) on a Kinesis Data Streams for DynamoDB stream,
    with `python -m processor.kcl` as its record processor: our filter and route see the
    table's changes, and the KCL's own lease table holds the last record as the shard's
    checkpoint once every batch was handled."""
    java = java_or_skip()
    seen, letters = tmp_path / "seen.jsonl", tmp_path / "dead-letter.jsonl"
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
source = "kinesis"
kinesis_stream = "orders-kds"
[checkpoints]
application = "kcl-{unique}"
[dead_letter]
path = "{letters}"
[[routes]]
name = "paid"
consumer = "tests.system.test_kcl_processor:write_seen"
filter = '{{"dynamodb": {{"NewImage": {{"status": {{"S": ["paid"]}}}}}}}}'
"""
    )
    daemon: subprocess.Popen[bytes] | None = None
    java_output = (tmp_path / "java.log").open("wb")
    server, h2c = h2c_moto(tmp_path)
    application = f"kcl-{unique}"
    try:
        kinesis = aws_client("kinesis", h2c)
        kinesis.create_stream(StreamName="orders-kds", ShardCount=1)
        sequences = []
        for i in range(6):
            data = order(i, "paid" if i % 2 else "new")
            answer = kinesis.put_record(StreamName="orders-kds", Data=data, PartitionKey=f"k{i}")
            sequences.append(answer["SequenceNumber"])
        kinesis.put_record(StreamName="orders-kds", Data=b"not json", PartitionKey="bad")
        last = kinesis.put_record(StreamName="orders-kds", Data=order(6, "paid"), PartitionKey="k6")
        root = Path(__file__).resolve().parents[2]
        child = f"{sys.executable} -m processor.kcl --config {config}"
        java_properties = tmp_path / "java.properties"
        java_properties.write_text(daemon_properties(child, "orders-kds", application, h2c))
        dynamodb = aws_client("dynamodb", h2c)

        def checkpoint() -> str | None:
            try:
                items = dynamodb.scan(TableName=application)["Items"]
            except dynamodb.exceptions.ResourceNotFoundException:
                return None
            marks = [i.get("checkpoint", {}).get("S") for i in items if "leaseKey" in i]
            return marks[0] if marks else None

        # the daemon starts the child in its own directory: there, tests/ is importable
        daemon = java_daemon(
            java, java_properties, java_output, cwd=root, env={"DSP_TEST_KCL_SEEN": str(seen)}
        )
        deadline = time.monotonic() + 240  # KCL 3 takes a minute to assign its first lease
        while checkpoint() != last["SequenceNumber"]:
            assert daemon.poll() is None, (tmp_path / "java.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"no checkpoint at the last record: {checkpoint()!r}",
                (tmp_path / "java.log").read_text()[-3000:],
            )
            time.sleep(0.5)
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
        java_output.close()
        server.terminate()
        server.wait(timeout=30)
    got = [json.loads(line) for line in seen.read_text().splitlines()]
    paid = [f"ORDER#{i}" for i in (1, 3, 5, 6)]
    assert [sk for sk, _ in got] == paid  # filtered, in order, each once
    assert [seq for _, seq in got][:3] == [sequences[i] for i in (1, 3, 5)]
    (letter,) = read_dead_letters(letters)
    assert "not JSON" in letter.error_message


@pytest.mark.slow(seconds=150)
@pytest.mark.moto_only(reason="the Java daemon reads moto's Kinesis")
def test_checkpoints_imported_from_the_java_daemons_lease_table_resume_where_it_stopped(
    tmp_path: Path, unique: str
) -> None:
    """The cut-over from the Java KCL: the MultiLangDaemon runs the recorder on a stream
    until its lease table checkpoints the sixth record, and is killed. Six more records
    arrive. `dsp leases import-kcl` takes its lease table, and `dsp multilang` runs the same
    processor: nothing the KCL checkpointed comes back, everything after it arrives."""
    java = java_or_skip()
    daemon: subprocess.Popen[bytes] | None = None
    java_output = (tmp_path / "java.log").open("wb")
    java_seen, dsp_seen = tmp_path / "java-seen.jsonl", tmp_path / "dsp-seen.jsonl"
    server, h2c = h2c_moto(tmp_path)
    application = f"kclimp-{unique}"
    try:
        kinesis = aws_client("kinesis", h2c)
        dynamodb = aws_client("dynamodb", h2c)
        kinesis.create_stream(StreamName="orders-cut", ShardCount=1)

        def put(i: int) -> str:  # a table's change, as Kinesis Data Streams for DynamoDB has it
            data = order(i, "new")
            answer = kinesis.put_record(StreamName="orders-cut", Data=data, PartitionKey=f"k{i}")
            return str(answer["SequenceNumber"])

        before = [put(i) for i in range(6)]
        java_properties = tmp_path / "java.properties"
        child = f"{sys.executable} {RECORDER} 3 {java_seen}"
        java_properties.write_text(daemon_properties(child, "orders-cut", application, h2c))

        def kcl_checkpoint() -> str | None:
            try:
                items = dynamodb.scan(TableName=application, ConsistentRead=True)["Items"]
            except dynamodb.exceptions.ResourceNotFoundException:
                return None
            marks = [i.get("checkpoint", {}).get("S") for i in items if "leaseKey" in i]
            return marks[0] if marks else None

        daemon = java_daemon(java, java_properties, java_output, cwd=tmp_path)
        deadline = time.monotonic() + 240  # KCL 3 takes a minute to assign its first lease
        while kcl_checkpoint() != before[-1]:
            assert daemon.poll() is None, (tmp_path / "java.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"KCL checkpoint: {kcl_checkpoint()!r}"
            time.sleep(0.5)
        daemon.send_signal(signal.SIGKILL)  # mid-stream, as a cut-over would stop it
        daemon.wait()
        daemon = None
        after = [put(i) for i in range(6, 12)]

        config = tmp_path / "dsp.toml"
        config.write_text(
            f"""
[aws]
region = "us-east-1"
endpoint_url = "{h2c}"
[stream]
source = "kinesis"
kinesis_stream = "orders-cut"
starting_position = "TRIM_HORIZON"
poll_interval_min_s = 0.2
[checkpoints]
table = "dsp-leases-{unique}"
application = "{application}"
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[multilang]
executable = "{sys.executable} {RECORDER} 3 {dsp_seen}"
"""
        )
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}

        dsp = dsp_with(config, env, timeout_s=180, cwd=tmp_path)

        dry = dsp("leases", "import-kcl", "--from-table", application, "--dry-run")
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert f"checkpoint {before[-1]}" in dry.stdout
        imported = dsp("leases", "import-kcl", "--from-table", application)
        assert imported.returncode == 0, imported.stderr[-3000:]
        assert "1 leases written" in imported.stdout
        ran = dsp("multilang", "--stop-when-idle", "2")
        assert ran.returncode == 0, ran.stderr[-3000:]
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
        java_output.close()
        server.terminate()
        server.wait(timeout=30)
    java_records = [e["sequenceNumber"] for e in events(java_seen) if e["event"] == "record"]
    assert java_records[: len(before)] == before
    ours = [e["sequenceNumber"] for e in events(dsp_seen) if e["event"] == "record"]
    # nothing the KCL checkpointed comes back, everything after it arrives, in order
    assert ours == after, (events(dsp_seen), ran.stderr[-4000:])
    assert not (tmp_path / "dl.jsonl").exists()
