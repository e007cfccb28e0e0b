"""`dsp multilang`: the real amazon_kclpy package's processors as children (issue 17).

The children are `tests/system/kcl_processors/recorder.py` (v1, v2 and v3 processor
classes of amazon_kclpy, run by its own `kcl.KCLProcess`) and AWS's sample processor
(`samples/sample_kclpy_app.py`, shipped with the package). The stream is the moto server's
(one shard) or the wire-level stream double (a split).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from processor.testing import WebhookReceiver, create_table
from processor.testing.stream_double import Scenario, StreamDouble
from tests.integration.helpers import stream_records

from .test_operations import metric

RECORDER = Path(__file__).parent / "kcl_processors" / "recorder.py"
TEE = Path(__file__).parent / "kcl_processors" / "tee.py"


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def properties(tmp_path: Path, command: str, unique: str, **extra: str) -> Path:
    lines = {
        "executableName": command,
        "applicationName": f"kcl-{unique}",
        "regionName": "us-east-1",
        "initialPositionInStream": "TRIM_HORIZON",
        "maxRecords": "4",
        "idleTimeBetweenReadsInMillis": "100",
        "failoverTimeMillis": "6000",
        "shutdownGraceMillis": "3000",
        "processingLanguage": "python/3.11",
        "someTypoKey": "x",
        **extra,
    }
    path = tmp_path / "app.properties"
    path.write_text(
        "# a KCL MultiLang file, as users have them\n"
        + "\n".join(f"{key} = {value}" for key, value in lines.items())
    )
    return path


def multilang(
    tmp_path: Path, props: Path, env: dict[str, str], *args: str, idle: str = "1.5"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "processor.cli",
            "multilang",
            "--properties",
            str(props),
            "--stop-when-idle",
            idle,
            *args,
        ],
        env={
            **os.environ,
            "DSP_DEAD_LETTER__PATH": str(tmp_path / "dl.jsonl"),
            "DSP_LOGGING__FORMAT": "json",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )


def recorded_app(
    tmp_path: Path, dynamodb: Any, unique: str, name: str, items: int, **extra: str
) -> tuple[str, Path, Path]:
    """A source table with ``items`` changes, and a properties file whose child is the v3
    recorder writing to the returned path: (table, out, properties)."""
    table = f"kcl-{name}-{unique}"
    create_table(dynamodb, table)
    write_items(dynamodb, table, 0, items)
    out = tmp_path / "seen.jsonl"
    command = f"{sys.executable} {RECORDER} 3 {out}"
    return table, out, properties(tmp_path, command, unique, tableName=table, **extra)


def status(props: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """`dsp status --properties FILE --json`: the shards of that application."""
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "status", "--properties", str(props), "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)["shards"]  # type: ignore[no-any-return]


def write_items(dynamodb: Any, table: str, start: int, count: int) -> None:
    for i in range(start, start + count):
        dynamodb.put_item(
            TableName=table,
            Item={
                "pk": {"S": f"TENANT#{i % 3}"},
                "sk": {"S": f"{i:04d}"},
                "n": {"N": str(i)},
                "b": {"B": bytes([i % 256, 1])},
            },
        )


@pytest.mark.parametrize("version", [1, 2, 3])
def test_kclpy_processors_get_every_record_in_order_in_the_adapter_shape_and_checkpoint(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str, version: int
) -> None:
    table = f"kcl-{unique}"
    create_table(dynamodb, table)
    write_items(dynamodb, table, 0, 10)
    out = tmp_path / "seen.jsonl"
    props = properties(
        tmp_path, f"{sys.executable} {RECORDER} {version} {out}", unique, tableName=table
    )
    env = {"AWS_ENDPOINT_URL": endpoint}  # boto3's standard variable, as KCL users set it
    first = multilang(tmp_path, props, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "processingLanguage: ignored (Java daemon only)" in first.stderr
    assert "someTypoKey: unknown, ignored" in first.stderr
    seen = events(out)
    assert seen[0]["event"] == "initialize"
    if version > 1:
        assert seen[0]["position"] == "TRIM_HORIZON"
    records = [e for e in seen if e["event"] == "record"]
    wire = stream_records(endpoint, table)
    assert [r["sequenceNumber"] for r in records] == [
        w["dynamodb"]["SequenceNumber"] for w in wire
    ], first.stderr[-4000:]
    for got, expected in zip(records, wire, strict=True):
        document = got["document"]
        stream = expected["dynamodb"]
        created_ms = round(float(stream["ApproximateCreationDateTime"]) * 1000)
        assert document == {
            "eventID": expected["eventID"],
            "eventName": expected["eventName"],
            "eventVersion": expected["eventVersion"],
            "eventSource": expected["eventSource"],
            "awsRegion": expected["awsRegion"],
            "dynamodb": {
                "ApproximateCreationDateTime": created_ms,
                "Keys": stream["Keys"],
                "NewImage": stream["NewImage"],
                "SequenceNumber": stream["SequenceNumber"],
                "SizeBytes": stream["SizeBytes"],
                "StreamViewType": stream["StreamViewType"],
            },
        }
        assert base64.b64decode(document["dynamodb"]["NewImage"]["b"]["B"])[1] == 1
        assert got["approximateArrivalTimestamp"] == created_ms
        assert got["partitionKey"] == got["sequenceNumber"]
        assert got["subSequenceNumber"] == 0
    checkpoints = [e for e in seen if e["event"] == "checkpoint"]
    assert all(c["error"] is None for c in checkpoints), checkpoints
    assert checkpoints[-1]["asked"] in (None, records[-1]["sequenceNumber"])
    # the end of the run: v3 hears shutdown_requested, then lease_lost; v1/v2 a ZOMBIE shutdown
    ending = [e["event"] for e in seen if e["event"] not in ("record", "checkpoint")]
    if version == 3:
        assert ending == ["initialize", "shutdown_requested", "lease_lost"]
    else:
        assert ending[-1] == "shutdown"
        assert seen[-1]["reason"] == "ZOMBIE"

    # a restart resumes after the last checkpoint: only the new records, once
    write_items(dynamodb, table, 10, 5)
    out.unlink()
    second = multilang(tmp_path, props, env)
    assert second.returncode == 0, second.stderr[-3000:]
    again = events(out)
    if version > 1:
        assert again[0]["position"] == records[-1]["sequenceNumber"]
    later = [e["sequenceNumber"] for e in again if e["event"] == "record"]
    assert later == [w["dynamodb"]["SequenceNumber"] for w in stream_records(endpoint, table)][10:]


def test_a_child_killed_mid_batch_is_restarted_and_nothing_is_lost(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    table, out, props = recorded_app(tmp_path, dynamodb, unique, "crash", 12)
    done = multilang(
        tmp_path,
        props,
        {
            "AWS_ENDPOINT_URL": endpoint,
            "RECORDER_CRASH_AFTER": "2",
            "DSP_STREAM__READER_RESTART_BASE_S": "0.1",
        },
    )
    assert done.returncode == 1, done.stderr[-3000:]  # a shard reader failed during the run
    assert "shard_reader_restarting" in done.stderr
    seen = events(out)
    assert [e["event"] for e in seen].count("initialize") == 2  # a fresh child after the crash
    delivered = [e["sequenceNumber"] for e in seen if e["event"] == "record"]
    expected = [w["dynamodb"]["SequenceNumber"] for w in stream_records(endpoint, table)]
    assert set(delivered) == set(expected)  # nothing lost
    assert delivered[:2] == expected[:2]  # the two before the crash, redelivered after it
    assert delivered[2:] == expected


def test_a_checkpoint_outside_the_delivered_range_gets_illegal_argument(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    _, out, props = recorded_app(tmp_path, dynamodb, unique, "bad", 3)
    done = multilang(
        tmp_path, props, {"AWS_ENDPOINT_URL": endpoint, "RECORDER_BAD_CHECKPOINT": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoints = [e for e in events(out) if e["event"] == "checkpoint"]
    assert checkpoints[0]["error"] == "IllegalArgumentException"
    assert checkpoints[1]["error"] is None


def test_aws_sample_processor_runs_unchanged(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """samples/sample_kclpy_app.py as shipped: it logs each record to stderr (which reaches
    our log with the shard) and checkpoints the largest sequence number it saw."""
    table = f"kcl-sample-{unique}"
    create_table(dynamodb, table)
    write_items(dynamodb, table, 0, 6)
    props = properties(
        tmp_path, f"{sys.executable} -m samples.sample_kclpy_app", unique, tableName=table
    )
    done = multilang(tmp_path, props, {"AWS_ENDPOINT_URL": endpoint})
    assert done.returncode == 0, done.stderr[-3000:]
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    lines = [e["line"] for e in logged if e.get("event") == "multilang_child_stderr"]
    wire = stream_records(endpoint, table)
    said = "".join(lines)  # the sample writes no newlines: pieces of one long line
    for record in wire:  # the sample prints int(sequenceNumber)
        assert f"Sequence Number: {int(record['dynamodb']['SequenceNumber'])}," in said
    (shard,) = status(props, {"AWS_ENDPOINT_URL": endpoint})
    assert shard["checkpoint"] == wire[-1]["dynamodb"]["SequenceNumber"]


def test_a_split_processes_the_parent_first_and_its_end_is_checkpointed(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    scenario = Scenario.tree(generations=2, fanout=2, records_per_shard=4, keys=4, last_open=False)
    out = tmp_path / "seen.jsonl"
    with StreamDouble(scenario) as double:
        props = properties(
            tmp_path,
            f"{sys.executable} {RECORDER} 3 {out}",
            unique,
            streamArn=double.stream_arn,
        )
        done = multilang(
            tmp_path,
            props,
            {
                "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
                "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": double.endpoint,
            },
        )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = events(out)
    parent, *children = [s.shard_id for s in scenario.shards]
    order = [(e["event"], e["shard"]) for e in seen if e["event"] in ("initialize", "shard_ended")]
    assert order[:2] == [("initialize", parent), ("shard_ended", parent)]
    assert sorted(shard for event, shard in order[2:] if event == "initialize") == children
    ends = [e for e in seen if e["event"] == "checkpoint" and e["asked"] is None]
    assert len(ends) == 3  # SHARD_END, each shard
    assert all(e["error"] is None for e in ends)
    for shard in scenario.shards:
        got = [
            e["sequenceNumber"]
            for e in seen
            if e["event"] == "record" and e["shard"] == shard.shard_id
        ]
        assert got == [str(shard.sequence(i)) for i in range(len(shard.keys))]


#: The Java MultiLangDaemon's messages (KCL 3.1.3, traced against moto Kinesis with a
#: recording child; ../shared/research/kcl-and-kinesis.md §2): each action's fields, in order.
JAVA_FIELDS = {
    "initialize": ["action", "shardId", "sequenceNumber", "subSequenceNumber"],
    "processRecords": ["action", "records", "millisBehindLatest"],
    "record": [
        "data",
        "partitionKey",
        "sequenceNumber",
        "approximateArrivalTimestamp",
        "subSequenceNumber",
        "action",
    ],
    "checkpoint": ["action", "sequenceNumber", "subSequenceNumber", "error"],
    "shutdownRequested": ["action"],
    "leaseLost": ["action"],
    "shardEnded": ["action"],
}


def test_the_wire_conversation_of_one_lease_life(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Every line both ways, for one lease from initialize to leaseLost (SIGTERM-like stop):
    the exact sequence of actions, each daemon message with the Java daemon's fields in its
    order, compact JSON, and each checkpoint answered before the child goes on."""
    table = f"kcl-wire-{unique}"
    create_table(dynamodb, table)
    write_items(dynamodb, table, 0, 6)
    wire_log, out = tmp_path / "wire.log", tmp_path / "seen.jsonl"
    command = f"{sys.executable} {TEE} {wire_log} -- {sys.executable} {RECORDER} 3 {out}"
    props = properties(tmp_path, command, unique, tableName=table)
    done = multilang(tmp_path, props, {"AWS_ENDPOINT_URL": endpoint})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = wire_log.read_text().splitlines()
    # a user's print() on stdout reaches the daemon, which skips it (as the Java daemon does)
    assert "< a user's print on stdout: the daemon skips it" in lines
    lines = [x for x in lines if x[2:].startswith("{")]
    conversation = []
    for line in lines:
        direction, text = line[0], line[2:]
        message = json.loads(text)
        if direction == ">":
            assert text == json.dumps(message, separators=(",", ":"))  # compact, as Jackson
            assert list(message) == JAVA_FIELDS[message["action"]], message
            for record in message.get("records", []):
                assert list(record) == JAVA_FIELDS["record"]
        step = message["action"]
        if step == "status":
            step = f"status:{message['responseFor']}"
        conversation.append(f"{direction}{step}")
    batch = [">processRecords", "<checkpoint", ">checkpoint", "<status:processRecords"]
    assert conversation == [
        ">initialize",
        "<status:initialize",
        *batch,  # records 1-4
        *batch,  # records 5-6
        ">shutdownRequested",
        "<checkpoint",  # the processor checkpoints "largest permitted"
        ">checkpoint",
        "<status:shutdownRequested",
        ">leaseLost",
        "<status:leaseLost",
    ]
    first = json.loads(lines[0][2:])
    assert first["sequenceNumber"] == "TRIM_HORIZON"
    assert first["subSequenceNumber"] == 0
    replies = [json.loads(x[2:]) for x in lines if x.startswith('> {"action":"checkpoint"')]
    assert [r["error"] for r in replies] == [None, None, None]


def test_a_hung_child_is_killed_after_timeout_and_restarted(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    table, out, props = recorded_app(tmp_path, dynamodb, unique, "hang", 5, timeoutInSeconds="2")
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "RECORDER_HANG_ONCE": "1",
        "DSP_STREAM__READER_RESTART_BASE_S": "0.1",
    }
    done = multilang(tmp_path, props, env, idle="2")
    assert done.returncode == 1, done.stderr[-3000:]  # a reader failed (and was restarted)
    assert "multilang_child_timed_out" in done.stderr
    seen = events(out)
    assert [e["event"] for e in seen].count("initialize") == 2
    delivered = [e["sequenceNumber"] for e in seen if e["event"] == "record"]
    assert delivered == [w["dynamodb"]["SequenceNumber"] for w in stream_records(endpoint, table)]


def test_a_lost_lease_tells_the_child_and_health_status_and_metrics_cover_the_mode(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    _, out, props = recorded_app(tmp_path, dynamodb, unique, "lost", 4, failoverTimeMillis="3000")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "DSP_DEAD_LETTER__PATH": str(tmp_path / "dl.jsonl"),
        "DSP_OBSERVABILITY__METRICS_PORT": str(port),
        "DSP_OBSERVABILITY__HOST": "127.0.0.1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "multilang", "--properties", str(props)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while len([e for e in events(out) if e["event"] == "record"]) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        while http_get(f"{base}/readyz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # the child wrote its records before it answered: the count follows its answer
        while metric(http_get(f"{base}/metrics")[1], "dsp_records_read_total") < 4:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert metric(http_get(f"{base}/metrics")[1], "dsp_leases_owned") == 1
        (row,) = status(props, env)
        assert row["owner"]
        # another worker takes the lease over (as a KCL worker whose failover time passed)
        leases = dynamodb.query(
            TableName="dsp-leases",
            KeyConditionExpression="application = :a",
            ExpressionAttributeValues={":a": {"S": f"kcl-{unique}"}},
        )["Items"]
        (lease,) = leases
        dynamodb.update_item(
            TableName="dsp-leases",
            Key={"application": lease["application"], "shard_id": lease["shard_id"]},
            UpdateExpression="SET #o = :thief, lease_counter = lease_counter + :one",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":thief": {"S": "thief"}, ":one": {"N": "1"}},
        )
        while "lease_lost" not in [e["event"] for e in events(out)]:
            assert time.monotonic() < deadline, events(out)
            time.sleep(0.1)
        assert "shutdown_requested" not in [e["event"] for e in events(out)]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_a_multilang_section_in_our_toml_runs_with_dsp_run(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """No properties file: `[multilang]` in the TOML file, and `dsp run`."""
    table, out, _ = recorded_app(tmp_path, dynamodb, unique, "toml", 3)
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
table = "{table}"
poll_interval_max_s = 0.5
[checkpoints]
application = "toml-{unique}"
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[multilang]
executable = "{sys.executable} {RECORDER} 3 {out}"
shutdown_grace_s = 3
"""
    )
    run = [sys.executable, "-m", "processor.cli", "run", "--config", str(config)]
    done = subprocess.run(
        [*run, "--stop-when-idle", "1.5"],
        env={**os.environ, "AWS_ENDPOINT_URL": endpoint},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    delivered = [e["sequenceNumber"] for e in events(out) if e["event"] == "record"]
    assert delivered == [w["dynamodb"]["SequenceNumber"] for w in stream_records(endpoint, table)]


def test_the_files_endpoints_win_over_aws_endpoint_url(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """dynamoDBEndpoint and kinesisEndpoint say where to read and write: a trap endpoint in
    AWS_ENDPOINT_URL receives nothing and the processor gets every record (on main: six
    DescribeStream calls went to the trap and 0 of 20 records arrived)."""
    with WebhookReceiver() as trap:
        _, out, props = recorded_app(
            tmp_path, dynamodb, unique, "ep", 20, dynamoDBEndpoint=endpoint,
            kinesisEndpoint=endpoint,
        )  # fmt: skip
        done = multilang(tmp_path, props, {"AWS_ENDPOINT_URL": trap.url})
        assert done.returncode == 0, done.stderr[-3000:]
        assert trap.requests == []
        assert trap.attempts == []
    assert len([e for e in events(out) if e["event"] == "record"]) == 20


def test_dsp_import_kcl_lease_table_in_the_properties_resumes_after_the_kcl_checkpoint(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """`dspImportKclLeaseTable` in the properties: at start, the KCL table's checkpoint (the
    fifth record) becomes our lease, and the processor gets records six to ten only. A second
    start keeps our lease (it is further along) instead of importing again."""
    table, out, _ = recorded_app(tmp_path, dynamodb, unique, "imp", 10)
    wire = stream_records(endpoint, table)
    kcl_table = f"kcl-leases-{unique}"
    dynamodb.create_table(
        TableName=kcl_table,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    described = boto3_streams(endpoint).describe_stream(StreamArn=arn)["StreamDescription"]
    (shard_id,) = [s["ShardId"] for s in described["Shards"]]
    dynamodb.put_item(
        TableName=kcl_table,
        Item={  # as the KCL writes a lease (leaseKey, checkpoint, sub-sequence, counter, owner)
            "leaseKey": {"S": shard_id},
            "checkpoint": {"S": wire[4]["dynamodb"]["SequenceNumber"]},
            "checkpointSubSequenceNumber": {"N": "0"},
            "leaseCounter": {"N": "42"},
            "leaseOwner": {"S": "java-worker-1"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
        },
    )
    props = properties(
        tmp_path,
        f"{sys.executable} {RECORDER} 3 {out}",
        unique,
        tableName=table,
        dspImportKclLeaseTable=kcl_table,
    )
    done = multilang(tmp_path, props, {"AWS_ENDPOINT_URL": endpoint})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 leases written" in done.stdout
    records = [e["sequenceNumber"] for e in events(out) if e["event"] == "record"]
    assert records == [r["dynamodb"]["SequenceNumber"] for r in wire[5:]]
    again = multilang(tmp_path, props, {"AWS_ENDPOINT_URL": endpoint})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 leases written" in again.stdout
    assert [e["sequenceNumber"] for e in events(out) if e["event"] == "record"] == records


def boto3_streams(endpoint: str) -> Any:
    import boto3  # noqa: PLC0415

    return boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name="us-east-1")
