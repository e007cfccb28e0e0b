"""`dsp iam-policy`: the least-privilege IAM policy for exactly what one configuration uses.

Pure: it reads the settings and never calls AWS. Every action the code calls is listed here,
per feature, with its resource ARN; `tests/system/test_iam_policy.py` runs each feature
against the moto server through a recording proxy and checks that every call it saw is allowed
by the policy generated for that configuration.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from processor.errors import ConfigError
from processor.settings import Settings, StreamSettings

__all__ = ["COMMANDS", "Policy", "account_of", "policy_for"]

#: the dsp commands a policy can be asked for
COMMANDS = ("run", "replay", "capture", "status", "prune", "redrive", "check-config")

_STREAM_ARN = re.compile(
    r"^arn:(?P<partition>[\w-]+):dynamodb:(?P<region>[\w-]+):(?P<account>\d{12}):"
    r"table/(?P<table>[^/]+)/stream/.+$"
)
_KINESIS_ARN = re.compile(
    r"^arn:(?P<partition>[\w-]+):kinesis:(?P<region>[\w-]+):(?P<account>\d{12}):stream/(?P<name>.+)$"
)
_QUEUE_URL = re.compile(r"^https?://[^/]+/(?P<account>\d{12})/(?P<name>[^/?#]+)")


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def account_of(settings: Settings) -> str | None:
    """The account id, where the configuration names it (a stream ARN, a Kinesis stream ARN
    or a queue URL)."""
    for _, stream in settings.named_streams:
        if stream.arn and (match := _STREAM_ARN.match(stream.arn)):
            return match["account"]
        kinesis = stream.kinesis_stream
        if kinesis and (match := _KINESIS_ARN.match(kinesis)):
            return match["account"]
    url = settings.dead_letter.sqs_queue_url
    if url and (match := _QUEUE_URL.match(url)):
        return match["account"]
    return None


@dataclass(slots=True)
class Policy:
    """Statements by Sid, and what the policy cannot cover (printed as notes)."""

    statements: dict[str, tuple[set[str], set[str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def allow(self, sid: str, actions: set[str], resources: set[str]) -> None:
        current = self.statements.setdefault(sid, (set(), set()))
        current[0].update(actions)
        current[1].update(resources)

    def document(self) -> dict[str, Any]:
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Action": sorted(actions),
                    "Resource": sorted(resources),
                }
                for sid, (actions, resources) in self.statements.items()
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.document(), indent=2)


def policy_for(
    settings: Settings,
    *,
    account: str | None = None,
    commands: tuple[str, ...] = COMMANDS,
    create_lease_table: bool = True,
) -> Policy:
    """The policy for running ``commands`` with ``settings``. Raises ConfigError when the
    account cannot be known (give ``account``)."""
    unknown = [c for c in commands if c not in COMMANDS]
    if unknown:
        raise ConfigError("--commands", ",".join(unknown), f"choose from {', '.join(COMMANDS)}")
    account = account or account_of(settings)
    if not account:
        raise ConfigError(
            "--account",
            None,
            "the configuration names no account (stream.arn or an SQS queue URL would); "
            "give the 12-digit account id",
        )
    region = settings.aws.region
    partition = _partition(region)

    def table_arn(name: str) -> str:
        return f"arn:{partition}:dynamodb:{region}:{account}:table/{name}"

    policy = Policy()
    wanted = set(commands)
    # resolve every stream (status and prune list its shards to find leases of shards gone)
    if wanted & {"run", "replay", "capture", "redrive", "check-config", "status", "prune"}:
        for _, stream in settings.named_streams:
            if stream.source == "kinesis":
                kinesis = f"arn:{partition}:kinesis:{region}:{account}"
                _kinesis(stream, policy, wanted, table_arn, kinesis)
            else:
                _dynamodb_stream(stream, policy, wanted, table_arn)
    leases = table_arn(settings.checkpoints.table)
    if wanted & {"run", "replay", "capture"}:
        actions = {"dynamodb:DescribeTable", "dynamodb:Query", "dynamodb:PutItem"}
        actions |= {"dynamodb:UpdateItem"}
        if create_lease_table:
            actions.add("dynamodb:CreateTable")
        policy.allow("LeasesAndCheckpoints", actions, {leases})
    if "run" in wanted and settings.checkpoints.cleanup:  # lease cleanup (ADR 0024)
        policy.allow("LeaseCleanup", {"dynamodb:DeleteItem"}, {leases})
    if "replay" in wanted:  # a replay started afresh deletes its own namespace's leases
        policy.allow("ReplayLeases", {"dynamodb:DeleteItem"}, {leases})
    if "status" in wanted:
        policy.allow("Status", {"dynamodb:Query"}, {leases})
    if "prune" in wanted:  # dsp leases prune --apply
        actions = {"dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:UpdateItem"}
        policy.allow("LeasePrune", actions, {leases})
    if wanted & {"run", "replay", "redrive", "check-config"}:
        _consumers(settings, policy, table_arn)
    url = settings.dead_letter.sqs_queue_url
    if url and wanted & {"run", "replay", "redrive"}:
        match = _QUEUE_URL.match(url)
        name = match["name"] if match else url.rsplit("/", 1)[-1]
        queue = f"arn:{partition}:sqs:{region}:{account}:{name}"
        # SendMessageBatch is authorised by sqs:SendMessage
        policy.allow("DeadLetters", {"sqs:SendMessage"}, {queue})
        if "redrive" in wanted:  # dsp dead-letter redrive | list | count read the queue
            # the *Batch calls are authorised by their single-message actions
            policy.allow(
                "DeadLetterQueueRedrive",
                {
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                },
                {queue},
            )
    return policy


def _dynamodb_stream(
    config: StreamSettings, policy: Policy, wanted: set[str], table_arn: Any
) -> None:
    if config.arn:
        stream = config.arn
    else:
        stream = f"{table_arn(str(config.table))}/stream/*"
        policy.allow("FindTheStream", {"dynamodb:DescribeTable"}, {table_arn(str(config.table))})
    policy.allow("ReadTheStream", {"dynamodb:DescribeStream"}, {stream})
    if wanted & {"run", "replay", "capture"}:
        policy.allow(
            "ReadTheStream", {"dynamodb:GetShardIterator", "dynamodb:GetRecords"}, {stream}
        )


def _kinesis(
    config: StreamSettings, policy: Policy, wanted: set[str], table_arn: Any, streams: str
) -> None:
    """The table's Kinesis Data Streams destination (``source = "kinesis"``)."""
    name = str(config.kinesis_stream)
    stream = name if name.startswith("arn:") else f"{streams}:stream/{name}"
    if config.table:  # the table's key schema
        policy.allow("FindTheStream", {"dynamodb:DescribeTable"}, {table_arn(config.table)})
    policy.allow("ReadTheStream", {"kinesis:DescribeStreamSummary"}, {stream})
    if wanted & {"status", "prune"}:
        policy.allow("ReadTheStream", {"kinesis:ListShards"}, {stream})
    if wanted & {"run", "replay", "capture"}:
        actions = {"kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"}
        policy.allow("ReadTheStream", actions, {stream})
        note = (
            "stream.kinesis_stream: if the stream is encrypted with a customer managed KMS key, "
            "also allow kms:Decrypt on that key"
        )
        if note not in policy.notes:
            policy.notes.append(note)


def _consumers(settings: Settings, policy: Policy, table_arn: Any) -> None:
    builtin = {"batch_write", "webhook", "cache"}
    for index, route in enumerate(settings.routes):
        options = route.options
        if route.consumer == "batch_write":
            target = table_arn(str(options.get("table")))
            actions = {"dynamodb:DescribeTable"}
            if options.get("versioned"):  # conditional writes, one item at a time
                actions.add("dynamodb:PutItem")
                if options.get("tombstone_ttl_s") is None:  # else a REMOVE writes a tombstone
                    actions.add("dynamodb:DeleteItem")
            else:
                actions.add("dynamodb:BatchWriteItem")
            policy.allow(f"Route{index}BatchWrite", actions, {target})
            if options.get("transform"):
                policy.notes.append(
                    f"routes.{index}.options.transform {options['transform']!r}: AWS calls of "
                    "your own code are not covered"
                )
        elif route.consumer == "webhook" and options.get("subscriptions_table"):
            policy.allow(
                f"Route{index}Subscriptions",
                {"dynamodb:Scan"},
                {table_arn(str(options["subscriptions_table"]))},
            )
        elif route.consumer not in builtin:
            policy.notes.append(
                f"routes.{index}.consumer {route.consumer!r}: AWS calls of your own code are "
                "not covered"
            )
