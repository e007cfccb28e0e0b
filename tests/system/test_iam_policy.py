"""`dsp iam-policy`: every AWS action each feature calls is in the generated policy.

Each dsp command runs against the moto server through a recording proxy, with a
configuration that turns every AWS-using feature on (stream by table name, lease table,
plain and versioned batch_write, a subscriptions table, SQS dead letters, replay). Every
call the proxy saw must be allowed by `dsp iam-policy` for that configuration: its action
in a statement whose resources match the ARN the request named.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from processor.testing import WebhookReceiver, create_table
from tests.system.cli import dsp_with

from .aws_recorder import Call, recording_proxy

ACCOUNT = "123456789012"  # moto's


def allowed(policy: dict[str, Any], call: Call) -> bool:
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or call.action not in statement["Action"]:
            continue
        if call.resource is None or any(
            fnmatch.fnmatchcase(call.resource, pattern) for pattern in statement["Resource"]
        ):
            return True
    return False


@pytest.mark.slow
@pytest.mark.moto_only(reason="SQS dead letters: DynamoDB Local serves DynamoDB only")
def test_every_action_each_feature_calls_is_in_the_generated_policy(
    tmp_path: Path, endpoint: str, dynamodb: Any, sqs: Any, unique: str
) -> None:
    source = f"iam-src-{unique}"
    create_table(dynamodb, source)
    create_table(dynamodb, f"iam-mirror-{unique}", stream_view=None)
    create_table(dynamodb, f"iam-versioned-{unique}", stream_view=None)
    create_table(dynamodb, f"iam-strict-{unique}", stream_view=None)
    subscriptions = f"iam-subs-{unique}"
    create_table(dynamodb, subscriptions, keys=("tenant", "url"), stream_view=None)
    queue_url = sqs.create_queue(QueueName=f"iam-dlq-{unique}")["QueueUrl"]
    with WebhookReceiver() as receiver:
        receiver.script("/reject", [400])  # every record: dead-lettered to SQS
        dynamodb.put_item(
            TableName=subscriptions,
            Item={"tenant": {"S": "*"}, "url": {"S": f"{receiver.url}/reject"}},
        )
        for i in range(6):
            dynamodb.put_item(
                TableName=source,
                Item={"pk": {"S": f"TENANT#t{i % 2}"}, "sk": {"S": str(i)}, "n": {"N": str(i)}},
            )
        dynamodb.delete_item(TableName=source, Key={"pk": {"S": "TENANT#t0"}, "sk": {"S": "0"}})
        config = tmp_path / "dsp.toml"
        config.write_text(
            f"""
[stream]
table = "{source}"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.1
[checkpoints]
table = "iam-leases-{unique}"
application = "iam-{unique}"
[dead_letter]
sqs_queue_url = "{queue_url}"
path = "{tmp_path / "dl.jsonl"}"
[http]
allowed_networks = ["127.0.0.0/8"]
[[routes]]
name = "mirror"
consumer = "batch_write"
[routes.options]
table = "iam-mirror-{unique}"
[[routes]]
name = "versioned"
consumer = "batch_write"
[routes.options]
table = "iam-versioned-{unique}"
versioned = true
tombstone_ttl_s = 3600
[[routes]]
name = "strict"
consumer = "batch_write"
[routes.options]
table = "iam-strict-{unique}"
versioned = true
[[routes]]
name = "hooks"
consumer = "webhook"
[routes.options]
subscriptions_table = "{subscriptions}"
"""
        )
        with recording_proxy(endpoint, account=ACCOUNT) as proxy:
            env = {**os.environ, "DSP_AWS__ENDPOINT_URL": proxy.url}

            dsp = dsp_with(config, env, timeout_s=120)

            seen: dict[str, list[Call]] = {}
            for command in (
                ("check-config",),
                ("run", "--stop-when-idle", "1"),
                ("status",),
                ("leases", "prune", "--apply"),
                ("replay", "--from", "trim-horizon", "--idle-s", "0.5"),
                ("replay", "--from", "trim-horizon", "--idle-s", "0.5"),  # afresh: forgets
                ("capture", "--out", str(tmp_path / "archive.jsonl"), "--stop-when-idle", "1"),
                ("dead-letter", "count"),
                ("dead-letter", "list"),
                ("dead-letter", "redrive"),  # still refused: exit 1, letters replaced
            ):
                done = dsp(*command)
                assert done.returncode in (0, 3) or command == ("dead-letter", "redrive"), (
                    command,
                    done.stderr[-2000:],
                )
                seen[" ".join(command[:1])] = seen.get(command[0], []) + proxy.reset()
        assert receiver.attempts  # the webhook did run (and was refused)
    assert sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages")

    # the account comes from the queue URL here (or stream.arn; otherwise --account)
    policy_run = subprocess.run(
        [sys.executable, "-m", "processor.cli", "iam-policy", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    policy = json.loads(policy_run.stdout)
    missing = {
        command: sorted({(c.action, c.resource) for c in calls if not allowed(policy, c)})
        for command, calls in seen.items()
    }
    assert all(not m for m in missing.values()), missing
    # the features were really exercised
    actions = {c.action for calls in seen.values() for c in calls}
    for action in (
        "dynamodb:GetRecords",
        "dynamodb:BatchWriteItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:Scan",
        "sqs:SendMessage",
        "dynamodb:CreateTable",
    ):
        assert action in actions, action
    # least privilege: no wildcard action, and every (action, resource) granted was used
    calls = {c for cs in seen.values() for c in cs}
    unused = [
        (action, pattern)
        for statement in policy["Statement"]
        for action in statement["Action"]
        for pattern in statement["Resource"]
        if not any(
            c.action == action and (c.resource is None or fnmatch.fnmatchcase(c.resource, pattern))
            for c in calls
        )
    ]
    assert not any("*" in a for s in policy["Statement"] for a in s["Action"])
    assert unused == []


@pytest.mark.moto_only(reason="Kinesis: moto serves it, DynamoDB Local does not")
def test_the_kinesis_source_calls_only_what_its_policy_allows(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """`source = "kinesis"`: check-config, run, replay and capture read the Kinesis stream
    (and the table's key schema) with exactly the actions the policy grants, no more."""
    import boto3  # noqa: PLC0415

    from processor.testing import kds_payload, put_change  # noqa: PLC0415

    table, name = f"iam-kds-src-{unique}", f"iam-kds-{unique}"
    create_table(dynamodb, table)
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    kinesis.create_stream(StreamName=name, ShardCount=2)
    for i in range(4):
        keys = {"pk": {"S": f"TENANT#t{i}"}, "sk": {"S": str(i)}}
        put_change(kinesis, name, kds_payload(keys, table=table), keys)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
source = "kinesis"
kinesis_stream = "{arn}"
table = "{table}"
[checkpoints]
table = "iam-kds-leases-{unique}"
application = "iam-kds-{unique}"
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "collect"
consumer = "tests.integration.transforms:collect"
"""
    )
    calls: list[Call] = []
    with recording_proxy(endpoint, account=ACCOUNT) as proxy:
        env = {**os.environ, "DSP_AWS__ENDPOINT_URL": proxy.url}
        for command in (
            ("check-config",),
            ("run", "--stop-when-idle", "1"),
            ("replay", "--from", "trim-horizon", "--idle-s", "0.5"),
            ("capture", "--out", str(tmp_path / "archive.jsonl"), "--stop-when-idle", "1"),
        ):
            done = subprocess.run(
                [sys.executable, "-m", "processor.cli", *command, "--config", str(config)],
                env=env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert done.returncode == 0, (command, done.stderr[-2000:])
        calls = proxy.reset()
    # the account comes from the Kinesis stream's ARN
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "iam-policy", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    policy = json.loads(done.stdout)
    assert sorted({(c.action, c.resource) for c in calls if not allowed(policy, c)}) == []
    actions = {c.action for c in calls}
    assert {"kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"} <= actions
    assert not any(a.startswith("dynamodb:") and "Stream" in a for a in actions)
    granted = {
        (action, pattern)
        for statement in policy["Statement"]
        for action in statement["Action"]
        for pattern in statement["Resource"]
        if action.startswith("kinesis:")
    }
    unused = [
        (action, pattern)
        for action, pattern in granted
        if not any(
            c.action == action and (c.resource is None or fnmatch.fnmatchcase(c.resource, pattern))
            for c in calls
        )
    ]
    assert unused == []
    assert all(pattern == arn for _, pattern in granted)
