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
    full = actions(policy_for(s).document())
    worker = actions(policy_for(s, commands=("run",), create_lease_table=False).document())
    assert "dynamodb:DeleteItem" in full  # replay restarts delete their own leases
    assert "dynamodb:DeleteItem" not in worker
    assert "dynamodb:CreateTable" not in worker
    status = actions(policy_for(s, commands=("status",)).document())
    assert set(status) == {"dynamodb:Query"}


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
