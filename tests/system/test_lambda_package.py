"""The Lambda deployment package run the way Lambda runs it: `make lambda-zip`'s script
builds it, it is unzipped into a read-only task directory, and the handler runs from there as
an unprivileged user with a real time budget; dead letters go to SQS (moto)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from processor.testing import WebhookReceiver
from processor.webhooks.signatures import new_secret

from .test_runtime_contract import as_uid, interpreter

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("setpriv"),
        reason="needs root and setpriv to run as an unprivileged user",
    ),
    pytest.mark.moto_only(reason="dead letters go to SQS, which moto serves"),
]

INVOKE = """
import json, sys, time
import processor.aws_lambda as function

class Context:  # Lambda's budget: 5 s from now
    deadline = time.monotonic() + 5
    def get_remaining_time_in_millis(self):
        return max(0, int((self.deadline - time.monotonic()) * 1000))

context = Context()
answer = function.handler(json.load(open(sys.argv[1])), context)
print(json.dumps({"answer": answer, "left_ms": context.get_remaining_time_in_millis()}))
"""


@pytest.mark.slow(seconds=30)
def test_the_packaged_handler_runs_from_a_read_only_task_directory(
    tmp_path: Path, endpoint: str, sqs: Any
) -> None:
    """Built, unzipped read-only, run as uid 10001: the packaged lambda.toml is read, a paid
    order reaches its webhook, a refused one becomes a letter in the SQS queue, and the answer
    comes within the budget, naming no failure (the letter is stored). The package leaves out
    rich (the replay progress bar), which structlog would import at every cold start, and
    holds its modules compiled, unchecked against their source."""
    out = tmp_path / "lambda.zip"
    built = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "lambda" / "build_zip.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert "native image walk: included" in built.stdout
    task = Path(tempfile.mkdtemp(prefix="dsp-task-", dir="/var/tmp"))
    receiver = WebhookReceiver()
    try:
        with zipfile.ZipFile(out) as archive:
            archive.extractall(task)
            tops = {name.split("/")[0].split("-")[0].lower() for name in archive.namelist()}
            compiled = archive.read(
                f"processor/__pycache__/aws_lambda.{sys.implementation.cache_tag}.pyc"
            )
        assert {"processor", "structlog", "boto3"} <= tops
        assert not tops & {"rich", "pygments", "markdown_it", "mdurl"}  # a terminal's, not ours
        # PEP 552 flags: bit 0 hash-based, bit 1 check_source; /var/task is read-only, so a
        # .pyc found stale (zip file times) would be compiled again at every cold start
        assert int.from_bytes(compiled[4:8], "little") == 0b01
        event = json.loads((EVENTS / "esm_success.json").read_text())
        statuses = ["paid", "paid", "cancelled", "new"]
        for record, status in zip(event["Records"], statuses, strict=True):
            record["eventName"] = "MODIFY"
            record["dynamodb"]["NewImage"]["status"] = {"S": status}
        event_file = task / "event.json"  # beside the code: readable by the function's user
        event_file.write_text(json.dumps(event))
        for path in [task, *task.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)  # /var/task is read-only
        queue_url = sqs.create_queue(QueueName="lambda-package-dlq")["QueueUrl"]
        receiver.__enter__()
        receiver.script("/paid", [200])
        receiver.script("/cancelled", [410])  # gone for good: a letter
        secret = new_secret()
        done = subprocess.run(
            as_uid(interpreter(), "-c", INVOKE, str(event_file)),
            cwd=task,
            env={
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(task),  # as Lambda puts /var/task on the path
                "DSP_CONFIG": "lambda.toml",
                "DSP_AWS__ENDPOINT_URL": endpoint,
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "DSP_DEAD_LETTER__SQS_QUEUE_URL": queue_url,
                "DSP_ROUTES__PAID_ORDERS__OPTIONS__URL": f"{receiver.url}/paid",
                "DSP_ROUTES__PAID_ORDERS__OPTIONS__SECRET": secret,
                "DSP_ROUTES__CANCELLATIONS__OPTIONS__URL": f"{receiver.url}/cancelled",
                "DSP_ROUTES__CANCELLATIONS__OPTIONS__SECRET": secret,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        receiver.__exit__(None, None, None)
        for path in [task, *task.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(task, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["answer"] == {"batchItemFailures": []}
    assert result["left_ms"] > 0
    assert len(receiver.received("/paid")) == 2
    (message,) = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    letter = json.loads(message["Body"])
    assert letter["route"] == "cancellations"
    assert letter["record"]["dynamodb"]["NewImage"]["status"] == {"S": "cancelled"}
