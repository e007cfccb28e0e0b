"""Secrets never leave the process: every output channel of a full-feature run is searched."""

from __future__ import annotations

import os
import secrets as random_secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from processor.testing import WebhookReceiver, create_table
from processor.webhooks.signatures import new_secret

from .test_operations import free_port, get, wait_until


def secret_values() -> dict[str, str]:
    token = random_secrets.token_hex(8)
    return {
        "webhook secret (env)": new_secret(),
        "rotated secret (file)": new_secret(),
        "subscription secret (table)": new_secret(),
        "authorization header": f"Bearer hdr{token}",
        "url password": f"pw{token}",
        "url token": f"tok{token}",
        "tenant url token": f"ttok{token}",
        "aws secret key": f"aws{token}",
    }


CONFIG = """
[aws]
region = "us-east-1"
[stream]
table = "{source}"
starting_position = "TRIM_HORIZON"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.1
[checkpoints]
table = "leases-{unique}"
application = "sec-{unique}"
[dead_letter]
path = "{dead_letters}"
[logging]
level = "DEBUG"
format = "json"
[observability]
metrics_port = {port}
[http]
allowed_networks = ["127.0.0.0/8"]
[tenancy]
attribute = "pk"
pattern = "^TENANT#(?P<tenant>[^#]+)"
[batch]
max_retries = 0

[[routes]]
name = "notify"
consumer = "webhook"
[routes.options]
url = "http://127.0.0.1:9/overridden-by-env"
secrets = ["{rotated}"]
max_attempts = 2
base_delay_s = 0.01
[routes.options.headers]
Authorization = "{authorization}"

[[routes]]
name = "tenants"
consumer = "webhook"
[routes.options]
subscriptions_table = "subs-{unique}"
max_attempts = 1
"""


def test_no_output_channel_carries_a_secret(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str, receiver: WebhookReceiver
) -> None:
    """Logs (DEBUG), dead letters, status, metrics, redrive and check-config output (of good
    and bad configurations) hold none of the run's secrets."""
    values = secret_values()
    source = f"orders-{unique}"
    create_table(dynamodb, source)
    create_table(dynamodb, f"subs-{unique}", keys=("tenant",), stream_view=None)
    tenant_url = f"{receiver.url}/tenant?token={values['tenant url token']}"
    dynamodb.put_item(
        TableName=f"subs-{unique}",
        Item={
            "tenant": {"S": "acme"},
            "url": {"S": tenant_url},
            "secret": {"S": values["subscription secret (table)"]},
        },
    )
    for i in range(4):
        item = {"pk": {"S": "TENANT#acme"}, "sk": {"S": f"ORDER#{i}"}}
        dynamodb.put_item(TableName=source, Item=item)
    ops_path = f"/ops?token={values['url token']}"
    receiver.script(ops_path, [503, 200])
    receiver.script(f"/tenant?token={values['tenant url token']}", [400])
    port = free_port()
    config = tmp_path / "dsp.toml"
    dead_letters = tmp_path / "dead-letter.jsonl"
    config.write_text(
        CONFIG.format(
            source=source,
            unique=unique,
            dead_letters=dead_letters,
            port=port,
            rotated=values["rotated secret (file)"],
            authorization=values["authorization header"],
        )
    )
    credentials = f"user:{values['url password']}@"
    env = {
        **os.environ,
        "DSP_AWS__ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": values["aws secret key"],
        "DSP_ROUTES__NOTIFY__OPTIONS__URL": (
            f"http://{credentials}{receiver.url.split('//')[1]}/ops?token={values['url token']}"
        ),
        "DSP_ROUTES__NOTIFY__OPTIONS__SECRET": values["webhook secret (env)"],
    }
    outputs: dict[str, str] = {}

    def dsp(*args: str, extra: dict[str, str] | None = None, file: Path = config) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "processor.cli", *args, "--config", str(file)],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout + done.stderr

    worker = subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(receiver.received(ops_path)) == 4, 90)
        wait_until(lambda: dead_letters.exists() and dead_letters.read_text().count("\n") >= 4, 90)
        outputs["/metrics"] = get(f"http://127.0.0.1:{port}/metrics")[1]
        outputs["dsp status"] = dsp("status")
        outputs["dsp status --json"] = dsp("status", "--json")
    finally:
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=60)
    outputs["dsp run logs"] = stdout + stderr
    assert '"webhook_retrying"' in outputs["dsp run logs"]  # the channels did carry URLs
    outputs["dead letters"] = dead_letters.read_text()
    assert "destination_not_allowed" not in outputs["dead letters"]
    assert "HTTP 400" in outputs["dead letters"]
    outputs["dsp dead-letter redrive"] = dsp("dead-letter", "redrive")
    outputs["dsp check-config"] = dsp("check-config")
    # bad configurations: errors name keys, never dump values
    extra_options = f'secret = "{values["rotated secret (file)"]}"\nurl = "{tenant_url}"\n'
    both = config.read_text().replace(
        "subscriptions_table = ", extra_options + "subscriptions_table = "
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(both)
    outputs["dsp run: url and table"] = dsp("run", file=bad)
    bad.write_text(config.read_text().replace('name = "tenants"', 'name = "notify"'))
    outputs["check-config: duplicate route"] = dsp("check-config", file=bad)
    outputs["check-config: empty dead-letter path"] = dsp(
        "check-config", extra={"DSP_DEAD_LETTER__PATH": ""}
    )
    assert "url, subscriptions, subscriptions_table" in outputs["dsp run: url and table"]
    for channel, text in outputs.items():
        assert text, channel
        for name, value in values.items():
            assert value not in text, f"{name} appears in {channel}"
