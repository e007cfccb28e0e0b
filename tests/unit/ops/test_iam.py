"""`dsp iam-policy` from configurations alone (the recording-proxy test checks it against
what the code really calls: tests/system/test_iam_policy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.errors import ConfigError
from processor.ops.iam import policy_for
from processor.settings import Settings, load_settings

STREAM = "arn:aws-cn:dynamodb:cn-north-1:210987654321:table/orders/stream/2026-01-01T00:00:00.000"


CACHE_ROUTE = (
    '[[routes]]\nname = "c"\nconsumer = "cache"\n[routes.options]\nredis_url = "memory"\n'
    'keys = ["k:{pk}"]\n'
)


def settings(tmp_path: Path, text: str, **environ: str) -> Settings:
    """``text`` plus what every configuration needs (checkpoints, a route)."""
    if "[checkpoints]" not in text:
        text += '[checkpoints]\napplication = "orders-worker"\n'
    if "[[routes]]" not in text:
        text += CACHE_ROUTE
    path = tmp_path / "dsp.toml"
    path.write_text(text)
    return load_settings(path, environ=environ)


def actions(policy_doc: dict[str, object]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for statement in policy_doc["Statement"]:  # type: ignore[attr-defined]
        for action in statement["Action"]:
            out.setdefault(action, set()).update(statement["Resource"])
    return out


def test_the_account_partition_and_region_come_from_the_stream_arn(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        f'[aws]\nregion = "cn-north-1"\n[stream]\narn = "{STREAM}"\n',
    )
    granted = actions(policy_for(s).document())
    assert granted["dynamodb:GetRecords"] == {STREAM}
    assert granted["dynamodb:Query"] == {
        "arn:aws-cn:dynamodb:cn-north-1:210987654321:table/dsp-leases"
    }
    assert "dynamodb:DescribeTable" in granted  # the lease table's, created on first run
    assert not any(a.startswith("sqs:") for a in granted)  # no queue configured
    assert "dynamodb:Scan" not in granted  # no subscriptions table


def test_a_worker_only_policy_leaves_out_replay_and_table_creation(tmp_path: Path) -> None:
    s = settings(tmp_path, f'[stream]\narn = "{STREAM}"\n')
    leases = "arn:aws:dynamodb:us-east-1:210987654321:table/dsp-leases"
    full = actions(policy_for(s).document())
    worker = actions(policy_for(s, commands=("run",), create_lease_table=False).document())
    assert "dynamodb:DeleteItem" in full  # replay restarts delete their own leases
    assert worker["dynamodb:DeleteItem"] == {leases}  # lease cleanup, on the lease table only
    assert "dynamodb:CreateTable" not in worker
    keep = settings(tmp_path, f'[stream]\narn = "{STREAM}"\n[checkpoints]\napplication = "w"\n'
                    "cleanup = false\n")  # fmt: skip
    assert "dynamodb:DeleteItem" not in actions(policy_for(keep, commands=("run",)).document())
    # status reads the leases, and lists the stream to name leases of shards gone from it
    status = actions(policy_for(s, commands=("status",)).document())
    assert set(status) == {"dynamodb:Query", "dynamodb:DescribeStream"}
    assert status["dynamodb:Query"] == {leases}
    prune = actions(policy_for(s, commands=("prune",)).document())
    assert set(prune) == {
        "dynamodb:Query", "dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:DescribeStream"
    }  # fmt: skip


def test_without_an_account_anywhere_the_error_names_the_flag(tmp_path: Path) -> None:
    s = settings(tmp_path, '[stream]\ntable = "orders"\n')
    with pytest.raises(ConfigError, match="--account"):
        policy_for(s)
    doc = policy_for(s, account="111122223333").document()
    assert actions(doc)["dynamodb:GetRecords"] == {
        "arn:aws:dynamodb:us-east-1:111122223333:table/orders/stream/*"
    }


def test_custom_code_is_named_as_not_covered(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        f'[stream]\narn = "{STREAM}"\n[[routes]]\nname = "mine"\nconsumer = "pkg.mod:fn"\n',
    )
    assert any("pkg.mod:fn" in note for note in policy_for(s).notes)


def test_unknown_commands_are_refused(tmp_path: Path) -> None:
    s = settings(tmp_path, f'[stream]\narn = "{STREAM}"\n')
    with pytest.raises(ConfigError, match="--commands"):
        policy_for(s, commands=("deploy",))


def test_a_kinesis_source_is_granted_its_stream_by_name_or_arn(tmp_path: Path) -> None:
    """The Kinesis stream's read actions on its ARN (built from the region and account when
    the stream is named), the table's DescribeTable for its key schema, and no DynamoDB
    Streams action; the account comes from the stream's ARN; KMS is a note."""
    arn = "arn:aws:kinesis:eu-west-1:210987654321:stream/orders-kds"
    by_arn = settings(
        tmp_path,
        f'[aws]\nregion = "eu-west-1"\n[stream]\nsource = "kinesis"\nkinesis_stream = "{arn}"\n'
        'table = "orders"\n',
    )
    policy = policy_for(by_arn)
    granted = actions(policy.document())
    for action in ("ListShards", "GetShardIterator", "GetRecords", "DescribeStreamSummary"):
        assert granted[f"kinesis:{action}"] == {arn}
    assert (
        "arn:aws:dynamodb:eu-west-1:210987654321:table/orders" in granted["dynamodb:DescribeTable"]
    )
    assert not any(a.startswith("dynamodb:") and "Stream" in a for a in granted)
    assert not any(a in granted for a in ("dynamodb:GetRecords", "dynamodb:GetShardIterator"))
    assert any("kms:Decrypt" in note for note in policy.notes)
    by_name = settings(tmp_path, '[stream]\nsource = "kinesis"\nkinesis_stream = "orders-kds"\n')
    named = actions(policy_for(by_name, account="123456789012").document())
    assert named["kinesis:GetRecords"] == {
        "arn:aws:kinesis:us-east-1:123456789012:stream/orders-kds"
    }
    status = actions(policy_for(by_name, account="123456789012", commands=("status",)).document())
    assert {a for a in status if a.startswith("kinesis:")} == {
        "kinesis:DescribeStreamSummary", "kinesis:ListShards"
    }  # fmt: skip
