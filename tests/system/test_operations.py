"""Operating a running worker: `dsp status`, /metrics, /healthz and /readyz."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from processor.testing import WebhookReceiver
from processor.testing.stream_double import Scenario, StreamDouble


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until(check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def start_worker(
    config: Path, endpoint: str, double: StreamDouble, **extra: str
) -> tuple[dict[str, str], subprocess.Popen[bytes]]:
    """`dsp run` with the lease table on ``endpoint`` and the stream on ``double``."""
    env = {
        **os.environ,
        "DSP_AWS__ENDPOINT_URL": endpoint,
        "DSP_AWS__STREAMS_ENDPOINT_URL": double.endpoint,
        "DSP_LOGGING__LEVEL": "WARNING",
        **extra,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return env, process


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_status_metrics_and_readiness_of_a_running_worker(
    tmp_path: Path, endpoint: str, receiver: WebhookReceiver, unique: str
) -> None:
    """status lists every shard with owner and checkpoint; metrics match deliveries;
    /readyz turns unready while the stream endpoint fails and ready when it returns."""
    scenario = Scenario.flat(4, records_per_shard=6, closed=False)
    port = free_port()
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
arn = "arn:aws:dynamodb:us-east-1:123456789012:table/double/stream/2026-01-01T00:00:00.000"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.2
[checkpoints]
table = "ops-{unique}"
application = "ops-{unique}"
owner = "w1"
lease_timeout_s = 6
renew_interval_s = 1
[observability]
metrics_port = {port}
host = "127.0.0.1"
ready_max_stall_s = 1.5
[tenancy]
pattern = "k(?P<tenant>[0-9]+)$"
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "hook"
consumer = "webhook"
[routes.options]
url = "{receiver.url}/ops"
"""
    )
    with StreamDouble(scenario) as double:
        env, process = start_worker(config, endpoint, double)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: len(receiver.received("/ops")) == 24, 90)
            wait_until(lambda: get(f"{base}/readyz")[0] == 200, 60)
            assert get(f"{base}/healthz") == (200, "ok\n")

            # dsp status, while the worker runs
            status = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "processor.cli",
                    "status",
                    "--config",
                    str(config),
                    "--json",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            shards = {row["shard_id"]: row for row in json.loads(status.stdout)["shards"]}
            assert set(shards) == {s.shard_id for s in scenario.shards}
            for shard in scenario.shards:
                row = shards[shard.shard_id]
                assert row["owner"] == "w1"
                assert row["checkpoint"] == str(shard.sequence(5))
                assert row["finished"] is False
            table = subprocess.run(
                [sys.executable, "-m", "processor.cli", "status", "--config", str(config)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            assert "4 shards: 4 owned by 1 worker(s)" in table

            # /metrics parses with the Prometheus parser and matches what was delivered
            _, text = get(f"{base}/metrics")
            assert metric(text, "dsp_records_total", route="hook", outcome="delivered") == 24
            assert metric(text, "dsp_records_read_total") == 24
            assert metric(text, "dsp_leases_owned") == 4
            assert metric(text, "dsp_reader_threads", state="limit") == 32
            assert 0 <= metric(text, "dsp_reader_threads", state="busy") <= 4
            assert metric(text, "dsp_readers_queued") >= 0
            assert metric(text, "dsp_consumer_events_total", route="hook", event="posted") == 24
            observed_calls = metric(text, "dsp_consumer_call_seconds_count", route="hook")
            assert observed_calls >= 4  # the latency histogram saw every consumer call
            assert metric(text, "dsp_webhook_connections_total", kind="new") >= 1
            # every record has a tenant label; together they are the 24 delivered
            routed = samples(text, "dsp_tenant_records_total")
            assert routed
            assert {labels["outcome"] for labels, _ in routed} == {"routed"}
            assert {labels["tenant"] for labels, _ in routed} == {"0", "1", "2"}
            assert sum(value for _, value in routed) == 24

            # the stream endpoint stops answering: not ready; it comes back: ready
            double.scenario.fail_every = 1
            wait_until(lambda: get(f"{base}/readyz")[0] == 503, 90)
            assert "not polled" in get(f"{base}/readyz")[1]
            assert get(f"{base}/healthz")[0] == 200  # alive, just not ready
            wait_until(
                lambda: (
                    "TransientError"
                    in get(f"{base}/metrics")[1].split("dsp_stream_retries_total")[-1]
                ),
                20,
            )
            double.scenario.fail_every = None
            wait_until(lambda: get(f"{base}/readyz")[0] == 200, 90)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert process.returncode == 0


_ = Any


def test_a_reader_denied_access_backs_off_stays_unready_and_shows_in_status(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """Issue 15, item 5. GetRecords answers AccessDenied for every shard: the reader restarts
    with backoff (not every 2 s), /readyz answers 503 for the whole outage (no flicker),
    `dsp status` names the failing shard and the error, and SIGTERM ends the run with exit
    status 1 (a shard reader failed), as docs/cli.md's exit statuses say."""
    scenario = Scenario.flat(1, records_per_shard=3, closed=False)
    scenario.deny_get_records = True
    port = free_port()
    config = tmp_path / "dsp.toml"
    config.write_text(
        f"""
[stream]
arn = "arn:aws:dynamodb:us-east-1:123456789012:table/double/stream/2026-01-01T00:00:00.000"
poll_interval_min_s = 0.05
poll_interval_max_s = 0.2
reader_restart_base_s = 0.2
reader_restart_max_s = 1.0
[checkpoints]
table = "deny-{unique}"
application = "deny-{unique}"
owner = "w1"
lease_timeout_s = 6
renew_interval_s = 0.5
[observability]
metrics_port = {port}
host = "127.0.0.1"
ready_max_stall_s = 1.0
[dead_letter]
path = "{tmp_path / "dl.jsonl"}"
[[routes]]
name = "cache"
consumer = "cache"
[routes.options]
redis_url = "memory"
keys = ["k:{{pk}}"]
"""
    )
    with StreamDouble(scenario) as double:
        env, process = start_worker(config, endpoint, double, DSP_AWS__MAX_ATTEMPTS="1")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: double.calls["GetRecords"] >= 1, 90)
            time.sleep(1.5)  # past ready_max_stall_s
            answers = []
            started = time.monotonic()
            while time.monotonic() - started < 4:
                answers.append(get(f"{base}/readyz")[0])
                time.sleep(0.05)
            assert set(answers) == {503}, answers
            assert "AccessDeniedException" in get(f"{base}/readyz")[1]
            # the reader was restarted (the backoff schedule itself is checked with an
            # injected sleep in tests/unit/leases/test_worker.py, not against the wall clock here)
            assert double.calls["GetRecords"] >= 3
            assert metric(get(f"{base}/metrics")[1], "dsp_reader_failures_total") >= 3
            table = subprocess.run(
                [sys.executable, "-m", "processor.cli", "status", "--config", str(config)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            assert "failing: shardId-00000" in table
            assert "AccessDeniedException" in table
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert process.returncode == 1
