"""What operators import: alert rules (promtool), the Grafana dashboard, autoscaling manifests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from prometheus_client.parser import text_string_to_metric_families

from processor.core.consumer import RouteStats
from processor.core.tenancy import TenantStats
from processor.ops.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\b(dsp_[a-z_]+)\b")


class FakeWorker:
    """The state() shape the worker exports (values do not matter here, names do)."""

    def state(self) -> dict[str, Any]:
        return {
            "records_read": 1,
            "leases_taken": 1,
            "leases_lost": 0,
            "leases_handed_off": 0,
            "leases_stolen": 0,
            "stream_retries": {"throttling": 1},
            "reader_failures": 0,
            "shards_unowned": 0,
            "trimmed_skips": 0,
            "reader_threads": 32,
            "readers_busy": 1,
            "readers_queued": 0,
            "leases": {"owned": 1, "free": 0, "finished": 0, "trimmed_unread": 0},
            "lease_scan_items": 1,
            "leases_deleted": {"children_started": 1},
            "shards": [{"shard_id": "s1", "lag_s": 1.0}],
        }


def exported_names() -> set[str]:
    """Every sample name the code exports, from a Metrics registry with every part present."""
    stats = RouteStats()
    for name in ("delivered", "filtered", "dead_lettered", "retry:throttling", "posted"):
        stats.add(name)
    tenants = TenantStats()
    tenants.add("r", "acme", "routed")
    metrics = Metrics({"r": stats}, http=urllib3.PoolManager(), tenants=tenants)
    metrics.worker = FakeWorker()
    metrics.observe_call("r", 0.01)
    text = metrics.exposition().decode()
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
    return path


def test_alert_rules_pass_promtool_with_a_firing_and_a_quiet_case_each() -> None:
    """`promtool check rules` and `promtool test rules` pass; every alert is tested."""
    rules = DEPLOY / "prometheus" / "alerts.yml"
    tests = DEPLOY / "prometheus" / "alerts.test.yml"
    for args in (["check", "rules", str(rules)], ["test", "rules", str(tests)]):
        done = subprocess.run(
            [promtool(), *args], capture_output=True, text=True, check=False, cwd=rules.parent
        )
        assert done.returncode == 0, done.stdout + done.stderr
    alerts = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    tested = yaml.safe_load(tests.read_text())["tests"]
    for alert in alerts:
        cases = [c for t in tested for c in t["alert_rule_test"] if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in cases), f"{alert} never fires in a test"
        quiet_series = any(
            not c["exp_alerts"]
            or len({s["series"] for s in t["input_series"]}) > len(c["exp_alerts"])
            for t in tested
            for c in t["alert_rule_test"]
            if c["alertname"] == alert
        )
        assert quiet_series, f"{alert} has no quiet case"


def queries() -> dict[str, str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dsp.json").read_text())
    found = {
        f"dashboard: {panel['title']}": target["expr"]
        for panel in dashboard["panels"]
        for target in panel["targets"]
    }
    for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            found[f"alert: {rule['alert']}"] = rule["expr"]
    keda = yaml.safe_load((DEPLOY / "kubernetes" / "keda-scaledobject.yaml").read_text())
    found["keda trigger"] = keda["spec"]["triggers"][0]["metadata"]["query"]
    ecs = json.loads((DEPLOY / "ecs" / "scaling-policy.json").read_text())
    spec = ecs["scalingPolicy"]["TargetTrackingScalingPolicyConfiguration"]
    found["ecs target tracking"] = spec["CustomizedMetricSpecification"]["MetricName"]
    return found


def test_every_query_names_a_metric_the_code_exports() -> None:
    """Renaming a metric fails this test until the dashboard, alerts and scalers follow."""
    exported = exported_names()
    for where, expr in queries().items():
        names = METRIC.findall(expr)
        assert names, f"{where}: no dsp metric in {expr!r}"
        for name in names:
            assert name in exported, f"{where}: {name} is not exported"


def test_the_dashboard_covers_what_operators_watch() -> None:
    """Throughput, lag, retries, dead letters, breakers, pool reuse, lease ownership."""
    dashboard = json.loads((DEPLOY / "grafana" / "dsp.json").read_text())
    assert dashboard["uid"]
    assert dashboard["schemaVersion"] >= 30
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "dsp_records_total",
        "dsp_iterator_age_seconds",
        "dsp_retries_total",
        "dsp_stream_retries_total",
        "circuit_opened",
        "dsp_webhook_connections_total",
        "dsp_leases_owned",
        "dsp_shards_unowned",
    ):
        assert metric in exprs, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])


def test_keda_scaled_object_is_well_formed() -> None:
    """Schema-level checks of the KEDA ScaledObject: target, bounds, a Prometheus trigger."""
    keda = yaml.safe_load((DEPLOY / "kubernetes" / "keda-scaledobject.yaml").read_text())
    deployment = yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text())
    assert keda["apiVersion"] == "keda.sh/v1alpha1"
    assert keda["kind"] == "ScaledObject"
    spec = keda["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    for key in ("pollingInterval", "cooldownPeriod"):
        assert isinstance(spec[key], int)
        assert spec[key] > 0
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert meta["serverAddress"].startswith("http")
    for key in ("threshold", "activationThreshold"):  # KEDA takes numbers as strings
        assert isinstance(meta[key], str)
        assert float(meta[key]) > 0


def test_ecs_scaling_policy_is_well_formed() -> None:
    """Schema-level checks of the Application Auto Scaling target and policy."""
    ecs = json.loads((DEPLOY / "ecs" / "scaling-policy.json").read_text())
    task = json.loads((DEPLOY / "ecs" / "task-definition.json").read_text())
    target, policy = ecs["scalableTarget"], ecs["scalingPolicy"]
    for part in (target, policy):
        assert part["ServiceNamespace"] == "ecs"
        assert part["ScalableDimension"] == "ecs:service:DesiredCount"
        assert re.fullmatch(r"service/[\w-]+/[\w-]+", part["ResourceId"])
    assert target["ResourceId"] == policy["ResourceId"]
    assert 1 <= target["MinCapacity"] <= target["MaxCapacity"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] > 0
    metric = config["CustomizedMetricSpecification"]
    assert metric["Statistic"] in {"Average", "Minimum", "Maximum", "SampleCount", "Sum"}
    # the metric comes from the task's own EMF lines (test_deploy_schemas checks which)
    application = {d["Name"]: d["Value"] for d in metric["Dimensions"]}["application"]
    env = {e["name"]: e["value"] for e in task["containerDefinitions"][0]["environment"]}
    assert application == env["DSP_CHECKPOINTS__APPLICATION"]
