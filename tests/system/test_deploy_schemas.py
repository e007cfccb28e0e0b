"""Every file under deploy/ checked against the schema of what will read it, offline: the
Kubernetes API's OpenAPI schemas (kubernetes-validate), KEDA's own CRD (tests/schemas), and
botocore's service models for the ECS and Application Auto Scaling calls that take the ECS
files (its ParamValidator, the one boto3 runs before sending). Each check is also shown to
fail on a field broken on purpose, so a validator that accepts everything cannot pass."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import botocore.session
import jsonschema
import kubernetes_validate
import pytest
import yaml
from botocore.validate import ParamValidator

from processor.ops.emf import EMF_METRICS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KEDA_CRD = ROOT / "tests" / "schemas" / "keda.sh_scaledobjects-v2.20.2.yaml"
#: the newest API the validator ships, and an older one still in wide use (EKS extended support)
KUBERNETES_VERSIONS = (kubernetes_validate.latest_version(), "1.29.0")


def kubernetes_objects() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{doc['kind']}", doc)
        for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def keda_schema() -> dict[str, Any]:
    crd = yaml.safe_load(KEDA_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return dict(version["schema"]["openAPIV3Schema"])


def kubernetes_errors(doc: dict[str, Any], version: str) -> list[str]:
    if doc["apiVersion"].startswith("keda.sh/"):
        validator = jsonschema.Draft7Validator(keda_schema())
        return [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)
        ]
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def botocore_errors(service: str, operation: str, params: dict[str, Any]) -> str:
    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).input_shape
    assert shape is not None
    report = ParamValidator().validate(params, shape)
    return str(report.generate_report()) if report.has_errors() else ""


def ecs_calls() -> list[tuple[str, str, dict[str, Any]]]:
    """The files as the calls that take them: RegisterTaskDefinition, then
    RegisterScalableTarget and PutScalingPolicy (the _comment is ours, not the API's)."""
    task = json.loads((DEPLOY / "ecs" / "task-definition.json").read_text())
    scaling = json.loads((DEPLOY / "ecs" / "scaling-policy.json").read_text())
    return [
        ("ecs", "RegisterTaskDefinition", task),
        ("application-autoscaling", "RegisterScalableTarget", scaling["scalableTarget"]),
        ("application-autoscaling", "PutScalingPolicy", scaling["scalingPolicy"]),
    ]


def test_every_deploy_file_is_checked() -> None:
    """No file under deploy/ escapes a check: Kubernetes and ECS here, Prometheus rules by
    promtool (test_operations_kit), the Grafana dashboard by its own test, the Lambda template
    by cfn-lint and botocore (test_lambda_deploy), its configuration and package builder by
    test_lambda_deploy and test_lambda_package."""
    checked = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} | {
        "task-definition.json",
        "scaling-policy.json",
        "alerts.yml",
        "alerts.test.yml",
        "dsp.json",
        "template.yaml",
        "lambda.toml",
        "build_zip.py",
    }
    files = {p.name for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert files <= checked
    kinds = {doc["kind"] for _, doc in kubernetes_objects()}
    assert {"Deployment", "ConfigMap", "Service", "PersistentVolumeClaim", "ScaledObject"} <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_objects_match_the_api_schemas(version: str) -> None:
    """Each object validates strictly (no unknown fields) against that Kubernetes version's
    schema, and the ScaledObject against KEDA's CRD."""
    for name, doc in kubernetes_objects():
        assert kubernetes_errors(doc, version) == [], name


def test_ecs_files_match_botocore_service_models() -> None:
    """The task definition and the scaling policy are valid input for the API calls."""
    for service, operation, params in ecs_calls():
        assert botocore_errors(service, operation, params) == "", operation


def _deployment() -> dict[str, Any]:
    return next(doc for _, doc in kubernetes_objects() if doc["kind"] == "Deployment")


def _scaled_object() -> dict[str, Any]:
    return next(doc for _, doc in kubernetes_objects() if doc["kind"] == "ScaledObject")


def test_a_broken_kubernetes_field_is_named() -> None:
    """A misspelt field, a wrong type, and a ScaledObject without a target each fail, naming
    the field."""
    misspelt = copy.deepcopy(_deployment())
    misspelt["spec"]["template"]["spec"]["terminationGracePeriod"] = 60
    (error,) = kubernetes_errors(misspelt, KUBERNETES_VERSIONS[0])
    assert "terminationGracePeriod" in error
    wrong_type = copy.deepcopy(_deployment())
    wrong_type["spec"]["replicas"] = "two"
    (error,) = kubernetes_errors(wrong_type, KUBERNETES_VERSIONS[0])
    assert error.startswith("spec.replicas")
    keda = copy.deepcopy(_scaled_object())
    del keda["spec"]["scaleTargetRef"]
    assert any("scaleTargetRef" in e for e in kubernetes_errors(keda, KUBERNETES_VERSIONS[0]))
    keda = copy.deepcopy(_scaled_object())
    keda["spec"]["pollingInterval"] = "30s"
    assert any(e.startswith("spec.pollingInterval") for e in kubernetes_errors(keda, "-"))


def test_a_broken_ecs_field_is_named() -> None:
    """botocore's report names a misspelt key and a wrong type."""
    (_, _, task), _, (_, _, policy) = ecs_calls()
    task = copy.deepcopy(task)
    task["containerDefinitions"][0]["stopTimeOut"] = 60
    assert 'Unknown parameter in containerDefinitions[0]: "stopTimeOut"' in botocore_errors(
        "ecs", "RegisterTaskDefinition", task
    )
    policy = copy.deepcopy(policy)
    policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] = "60"
    assert "TargetValue" in botocore_errors("application-autoscaling", "PutScalingPolicy", policy)


def test_the_ecs_scaling_metric_is_one_the_task_writes() -> None:
    """The scaling policy's metric is an EMF metric the task's settings produce: its name, the
    namespace, the application dimension and the unit (no agent in between to rename it)."""
    (_, _, task), _, (_, _, policy) = ecs_calls()
    env = {e["name"]: e["value"] for e in task["containerDefinitions"][0]["environment"]}
    assert env["DSP_OBSERVABILITY__CLOUDWATCH"] == "emf"
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    exported = EMF_METRICS[metric["MetricName"]]
    assert metric["Namespace"] == env.get("DSP_OBSERVABILITY__CLOUDWATCH_NAMESPACE", "dsp")
    assert metric["Dimensions"] == [
        {"Name": "application", "Value": env["DSP_CHECKPOINTS__APPLICATION"]}
    ]
    assert exported.labels == ()  # one figure per task: the worst shard it owns
    assert (metric["Unit"], metric["Statistic"]) == (exported.unit, "Maximum")


def test_dead_letters_outlive_the_pod_and_the_task() -> None:
    """The overflow file is on persistent storage: a ReadWriteMany claim in Kubernetes (shared by
    every replica), an EFS volume on ECS; never /tmp."""
    docs = {doc["kind"]: doc for _, doc in kubernetes_objects()}
    config = docs["ConfigMap"]["data"]["worker.toml"]
    assert 'path = "/var/lib/dsp/' in config
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/dsp")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = docs["PersistentVolumeClaim"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (_, _, task), *_ = ecs_calls()
    (ecs_container,) = task["containerDefinitions"]
    env = {e["name"]: e["value"] for e in ecs_container["environment"]}
    assert env["DSP_DEAD_LETTER__PATH"].startswith("/var/lib/dsp/")
    (point,) = ecs_container["mountPoints"]
    assert point["containerPath"] == "/var/lib/dsp"
    (ecs_volume,) = [v for v in task["volumes"] if v["name"] == point["sourceVolume"]]
    assert "efsVolumeConfiguration" in ecs_volume
