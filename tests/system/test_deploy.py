"""The container and deployment files: the image's entry point run exactly as the image would
(environment-only configuration) against the moto server; manifests checked field by field.

No container engine runs on this machine, so the Dockerfile's own ENTRYPOINT and ENV lines
are read and executed here; hadolint lints the file in `make lint` (CI)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from standardwebhooks import Webhook

from processor.testing import WebhookReceiver, create_table
from processor.webhooks.signatures import new_secret

from .test_operations import free_port

ROOT = Path(__file__).resolve().parents[2]
SHUTDOWN_DEADLINE_S = 30


def dockerfile() -> tuple[list[str], dict[str, str]]:
    """The runtime stage's ENTRYPOINT and ENV, as the image would run them."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.split("\nFROM ")[-1]
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", runtime, re.M).group(1))  # type: ignore[union-attr]
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.*)$", runtime, re.M):
        for pair in shlex.split(line):
            key, _, value = pair.partition("=")
            env[key] = value
    assert "STOPSIGNAL SIGTERM" in runtime
    assert re.search(r"^USER \d+$", runtime, re.M), "the image runs as a non-root user"
    return entrypoint, env


def test_image_entry_point_with_environment_only_config_stops_cleanly_on_sigterm(
    tmp_path: Path, endpoint: str, dynamodb: Any, receiver: WebhookReceiver, unique: str
) -> None:
    """`dsp run` as the image starts it, configured by DSP_ variables only: SIGTERM → exit 0,
    final checkpoint written, lease released."""
    entrypoint, image_env = dockerfile()
    assert entrypoint == ["dsp", "run"]
    source = f"image-{unique}"
    create_table(dynamodb, source)
    for i in range(7):
        dynamodb.put_item(TableName=source, Item={"pk": {"S": "a"}, "sk": {"S": str(i)}})
    secret_file = tmp_path / "webhook-secret"
    secret = new_secret()
    secret_file.write_text(secret)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSP_")}
    env.update(image_env)
    env.update(
        {
            "DSP_OBSERVABILITY__METRICS_PORT": str(free_port()),
            "DSP_AWS__ENDPOINT_URL": endpoint,
            "DSP_STREAM__TABLE": source,
            "DSP_STREAM__POLL_INTERVAL_MIN_S": "0.05",
            "DSP_CHECKPOINTS__TABLE": f"leases-{unique}",
            "DSP_CHECKPOINTS__APPLICATION": f"image-{unique}",
            "DSP_DEAD_LETTER__PATH": str(tmp_path / "dl.jsonl"),
            "DSP_LOGGING__LEVEL": "DEBUG",
            "DSP_ROUTES": json.dumps(
                [
                    {
                        "name": "notify",
                        "consumer": "webhook",
                        "options": {"url": f"{receiver.url}/img"},
                    }
                ]
            ),
            "DSP_ROUTES__NOTIFY__OPTIONS__SECRET_FILE": str(secret_file),
        }
    )
    env["PATH"] = f"{Path(os.sys.executable).parent}:{env.get('PATH', '')}"  # type: ignore[attr-defined]
    process = subprocess.Popen(
        entrypoint, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert receiver.wait_for(7, timeout_s=90, path="/img"), (
            "the image's worker delivered nothing"
        )
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=SHUTDOWN_DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr[-2000:]
    (lease,) = dynamodb.query(
        TableName=f"leases-{unique}",
        KeyConditionExpression="application = :a",
        ExpressionAttributeValues={":a": {"S": f"image-{unique}"}},
        ConsistentRead=True,
    )["Items"]
    last = max(r.json()["sequence_number"] for r in receiver.received("/img"))
    assert lease["checkpoint"]["S"] == last
    assert "owner" not in lease
    # the secret came from a file, signed every request, and never reached the logs
    for request in receiver.received("/img"):
        Webhook(secret).verify(request.body, request.headers)
    assert secret not in stderr
    assert '"stop_requested"' in stderr
    assert '"worker_stopped"' in stderr


def test_kubernetes_manifests_have_what_matters() -> None:
    """Probes, a grace period above the shutdown deadline, non-root, no inline secrets."""
    docs = {
        doc["kind"]: doc
        for path in (ROOT / "deploy" / "kubernetes").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
    }
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > SHUTDOWN_DEADLINE_S
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["requests"]["memory"]
    assert any(v["name"] == "secrets" and "secret" in v for v in pod["volumes"])
    config = docs["ConfigMap"]["data"]["worker.toml"]
    assert "deadline_s = 30" in config
    for text in [config, json.dumps(container.get("env", []))]:
        assert not re.search(r"secret\s*=\s*\"", text), "secrets belong in the Secret, not inline"
    assert "Secret" not in docs, "no Secret with values is shipped"


def test_ecs_task_definition_has_what_matters() -> None:
    """Non-root, a stop timeout above the shutdown deadline, a health check, secrets by ARN."""
    task = json.loads((ROOT / "deploy" / "ecs" / "task-definition.json").read_text())
    (container,) = task["containerDefinitions"]
    assert container["user"] != "0"
    assert container["user"] != "root"
    assert container["stopTimeout"] > SHUTDOWN_DEADLINE_S
    assert "/healthz" in " ".join(container["healthCheck"]["command"])
    assert all(s["valueFrom"].startswith("arn:aws:") for s in container["secrets"])
    assert not any("SECRET" in e["name"] for e in container["environment"])
