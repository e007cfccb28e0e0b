"""The container image's runtime contract, reproduced without a container engine (none runs on
the machines we build on): the wheel installed alone in a fresh virtualenv, `dsp run` as the
image's uid 10001 with no HOME, a working directory it cannot write, a read-only root file
system, /tmp as an emptyDir and the data volume at /var/lib/dsp (a private mount namespace
does the mounts), configured by the shipped ConfigMap's TOML with only its endpoints and names
pointed at the test's servers.

Needs root (setpriv, unshare): CI and `make test` run as root on our machines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from processor.testing import WebhookReceiver, create_table
from processor.webhooks.signatures import new_secret

from ..conftest import REDIS_URL
from .test_deploy import dockerfile
from .test_operations import free_port

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
UID = 10001
REGION = "eu-west-1"  # the ConfigMap's

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("unshare"),
    reason="needs root, setpriv and unshare to run as the image's uid in its own mounts",
)


def manifests() -> dict[str, dict[str, Any]]:
    return {
        doc["kind"]: doc
        for path in KUBERNETES.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }


def as_uid(*command: str) -> list[str]:
    return ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *command]


def interpreter() -> str:
    """A Python 3.11 the unprivileged uid runs as root does: this one, unless it lives where
    that uid cannot read (pyenv under /root, where what runs instead may be another 3.11 whose
    dependency markers differ), then the system's (the image has its own 3.11 too)."""
    show = "import sys; print(sys.version)"
    for candidate in (sys.executable, "/usr/bin/python3"):
        as_root = subprocess.run(
            [candidate, "-c", show], capture_output=True, text=True, check=False
        )
        as_user = subprocess.run(
            as_uid(candidate, "-c", show), capture_output=True, text=True, check=False
        )
        same = as_user.returncode == 0 and as_user.stdout == as_root.stdout
        if same and as_root.stdout.startswith("3.11."):
            return candidate
    pytest.fail("no Python 3.11 that uid 10001 can run (the image runs python:3.11-slim)")


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """The wheel (built as the Dockerfile's build stage does) in a fresh virtualenv that
    uid 10001 can read; its bin directory."""
    base = Path(tempfile.mkdtemp(prefix="dsp-image-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
             str(base / "wheels"), str(ROOT)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        (wheel,) = (base / "wheels").glob("*.whl")
        env = base / "venv"
        subprocess.run([interpreter(), "-m", "venv", str(env)], check=True, timeout=120)
        subprocess.run(
            [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        yield env / "bin"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def image_environment(bin_dir: Path, **extra: str) -> dict[str, str]:
    """The image's ENV and the Deployment's env, a PATH to the installed dsp, no HOME."""
    _, image_env = dockerfile()
    (container,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {**image_env, **{e["name"]: e["value"] for e in container["env"]}}
    env.pop("HOME", None)
    env.update(
        PATH=f"{bin_dir}:/usr/bin:/bin",
        AWS_ACCESS_KEY_ID="testing",  # in a pod: the service account's role (IRSA)
        AWS_SECRET_ACCESS_KEY="testing",
        **extra,
    )
    return env


def test_an_unwritable_dead_letter_file_stops_the_start_in_one_line(
    installed: Path, endpoint: str, unique: str
) -> None:
    """The trap of an image without a data directory: as uid 10001 in /, the default relative
    dead-letter file cannot be created. `dsp run` says so in one line naming the path, exit 2,
    before reading anything, instead of starting and stalling on the first poison record."""
    config = Path(tempfile.mkdtemp(prefix="dsp-config-", dir="/var/tmp"))
    try:
        config.chmod(0o755)
        toml = config / "worker.toml"
        toml.write_text(
            f'[aws]\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
            f'[stream]\ntable = "unwritable-{unique}"\n'
            f'[checkpoints]\ntable = "leases-{unique}"\napplication = "unwritable-{unique}"\n'
            '[[routes]]\nname = "mirror"\nconsumer = "batch_write"\n'
            f'[routes.options]\ntable = "mirror-{unique}"\n'
        )
        toml.chmod(0o644)
        dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        create_table(dynamodb, f"unwritable-{unique}")
        create_table(dynamodb, f"mirror-{unique}", stream_view=None)
        env = image_environment(
            installed, DSP_CONFIG=str(toml), DSP_OBSERVABILITY__METRICS_PORT=str(free_port())
        )
        del env["DSP_ROUTES__NOTIFY__OPTIONS__SECRET_FILE"]  # the ConfigMap's route is not here
        done = subprocess.run(
            as_uid(str(installed / "dsp"), "run", "--stop-when-idle", "2"),
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(config, ignore_errors=True)
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("dsp: configuration error: dead_letter.path = 'dead-letter.jsonl'")
    assert "dead-letter.jsonl in /" in line
    assert "Permission denied" in line


def configmap_toml(replacements: dict[str, str]) -> str:
    """The shipped ConfigMap's worker.toml with only endpoints and names replaced (each one
    must be there, so a change to the ConfigMap shows here)."""
    text = str(manifests()["ConfigMap"]["data"]["worker.toml"])
    for old, new in replacements.items():
        assert old in text, f"the ConfigMap no longer has {old!r}"
        text = text.replace(old, new)
    return text


def wait_for_status(
    url: str, status: int, timeout_s: float, process: subprocess.Popen[str]
) -> float:
    """Seconds until ``url`` answered ``status``; fails with the output if ``process`` ended."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"dsp ended with {process.returncode}: {stderr[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == status:
                    return time.monotonic() - start
        except urllib.error.HTTPError as exc:
            if exc.code == status:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} never answered {status} within {timeout_s} s")


@pytest.mark.moto_only(reason="the ConfigMap's dead letters go to SQS, which moto serves")
@pytest.mark.slow(seconds=60)
def test_the_image_runs_as_the_manifests_deploy_it(
    installed: Path, endpoint: str, unique: str
) -> None:
    """Starts with a read-only root and working directory, answers /healthz and /readyz,
    delivers, sends a poison record's letter where the manifest says (SQS), and drains on
    SIGTERM within terminationGracePeriodSeconds with its lease released."""
    deployment = manifests()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    grace_s = pod["terminationGracePeriodSeconds"]
    (container,) = pod["containers"]
    data_mount = next(m for m in container["volumeMounts"] if m["name"] == "data")["mountPath"]
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    queue_url = sqs.create_queue(QueueName=f"dlq-{unique}")["QueueUrl"]
    table, leases, application = f"orders-{unique}", f"leases-{unique}", f"fanout-{unique}"
    create_table(dynamodb, table)
    base = Path(tempfile.mkdtemp(prefix="dsp-pod-", dir="/var/tmp"))
    receiver = WebhookReceiver()
    process: subprocess.Popen[str] | None = None
    try:
        base.chmod(0o755)
        for name, mode in (("config", 0o755), ("secrets", 0o755), ("work", 0o555)):
            (base / name).mkdir(mode=mode)
        (base / "varlib" / "dsp").mkdir(parents=True)
        os.chown(base / "varlib" / "dsp", UID, UID)  # the volume, writable by the pod's fsGroup
        receiver.__enter__()
        # the first request is refused for good: whichever record it carried is the poison
        # one (the consumer posts different items concurrently)
        receiver.script("/dynamodb", [400, 200])
        config = base / "config" / "worker.toml"
        config.write_text(
            configmap_toml(
                {
                    "[aws]\n": f'[aws]\nendpoint_url = "{endpoint}"\n',
                    'table = "orders"': f'table = "{table}"',
                    'table = "dsp-leases"': f'table = "{leases}"',
                    'application = "orders-fanout"': f'application = "{application}"',
                    "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-fanout-dlq": queue_url,
                    "https://hooks.example.com/dynamodb": f"{receiver.url}/dynamodb",
                    "redis://cache:6379/0": REDIS_URL,
                }
            )
        )
        config.chmod(0o644)
        secret = base / "secrets" / "webhook-secret"
        secret.write_text(new_secret())
        secret.chmod(0o644)
        port = free_port()
        env = image_environment(
            installed,
            DSP_CONFIG=str(config),
            DSP_ROUTES__NOTIFY__OPTIONS__SECRET_FILE=str(secret),
            DSP_OBSERVABILITY__METRICS_PORT=str(port),
        )
        pod_script = (
            f"mount --bind {base / 'varlib'} /var/lib"  # the data volume at /var/lib/dsp
            " && mount -o remount,bind,ro /"  # readOnlyRootFilesystem
            " && mount -t tmpfs -o size=16m tmpfs /tmp"  # the emptyDir
            f" && cd {base / 'work'}"  # a working directory it cannot write
            f" && exec {' '.join(as_uid(str(installed / 'dsp'), 'run'))}"
        )
        started = time.monotonic()
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", pod_script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        health_s = wait_for_status(f"http://127.0.0.1:{port}/healthz", 200, 60, process)
        ready_s = wait_for_status(f"http://127.0.0.1:{port}/readyz", 200, 90, process)
        for i in range(5):
            dynamodb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "sk": {"S": "0"}})
        assert receiver.wait_for(4, timeout_s=90, path="/dynamodb"), "nothing was delivered"
        letters: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while not letters and time.monotonic() < deadline:
            answer = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)
            letters += [json.loads(m["Body"]) for m in answer.get("Messages", [])]
        (letter,) = letters
        assert letter["route"] == "notify"
        poisoned = letter["record"]["dynamodb"]["Keys"]["pk"]["S"]
        delivered = {r.json()["keys"]["pk"] for r in receiver.received("/dynamodb")}
        assert delivered == {f"k{i}" for i in range(5)} - {poisoned}
        stop = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=grace_s)  # the kubelet's SIGKILL comes then
        drain_s = time.monotonic() - stop
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.communicate()
        receiver.__exit__(None, None, None)
        shutil.rmtree(base, ignore_errors=True)
    assert process.returncode == 0, stderr[-3000:]
    assert '"worker_stopped"' in stderr
    (lease,) = dynamodb.query(
        TableName=leases,
        KeyConditionExpression="application = :a",
        ExpressionAttributeValues={":a": {"S": application}},
        ConsistentRead=True,
    )["Items"]
    assert "owner" not in lease  # released: another replica takes it at once
    assert data_mount == "/var/lib/dsp"
    print(  # the figures the note quotes (pytest -s)
        f"runtime contract: /healthz after {health_s:.1f} s, /readyz after {ready_s:.1f} s, "
        f"SIGTERM drained in {drain_s:.1f} s (grace {grace_s} s), "
        f"whole run {time.monotonic() - started:.1f} s"
    )


def test_the_lambda_handler_refuses_a_dead_letter_file_in_its_read_only_task_directory(
    installed: Path, tmp_path: Path
) -> None:
    """Lambda's shape: the installed handler as an unprivileged user whose working directory
    (/var/task) is read-only, with the default dead-letter file and no queue. The first event
    fails at once with one line naming the path, instead of a poison record later retrying the
    write until Lambda's timeout."""
    task = Path(tempfile.mkdtemp(prefix="dsp-task-", dir="/var/tmp"))
    try:
        task.chmod(0o555)  # root's, read-only for the function's user
        config = Path(tempfile.mkdtemp(prefix="dsp-lambda-", dir="/var/tmp"))
        config.chmod(0o755)
        (config / "lambda.toml").write_text(
            '[[routes]]\nname = "notify"\nconsumer = "webhook"\n'
            '[routes.options]\nurl = "http://127.0.0.1:9/hook"\nsecret = "whsec_'
            + new_secret().removeprefix("whsec_")
            + '"\n'
        )
        (config / "lambda.toml").chmod(0o644)
        event = ROOT / "tests" / "events" / "esm_success.json"
        invoke = (
            "import json, processor.aws_lambda as f; "
            f"print(f.handler(json.load(open({str(event)!r})), None))"
        )
        done = subprocess.run(
            as_uid(str(installed / "python"), "-c", invoke),
            cwd=task,
            env={
                "PATH": f"{installed}:/usr/bin:/bin",
                "DSP_CONFIG": str(config / "lambda.toml"),
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(task, ignore_errors=True)
        shutil.rmtree(config, ignore_errors=True)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]  # what Lambda reports as errorMessage
    assert last.startswith("processor.errors.ConfigError: dead_letter.path = 'dead-letter.jsonl'")
    assert f"dead-letter.jsonl in {task}: Permission denied" in last
