"""Real servers on 127.0.0.1, started once per session: moto server, Redis, HTTP receivers.

The fixtures serve ``tests/integration`` (in-process, real local servers) and ``tests/system``
(tests that spawn ``dsp`` or a JVM); ``tests/unit`` uses none of them. Tests are marked by
their folder: ``integration`` or ``system``.

``DSP_TEST_BACKEND`` chooses the DynamoDB endpoint: ``moto`` (default) or ``dynamodb-local``
(Amazon's DynamoDB Local, unpacked under ``DSP_TEST_DYNAMODB_LOCAL_DIR`` by ``make
test-dynamodb-local``). Tests that need what only moto offers carry
``@pytest.mark.moto_only(reason)`` and are skipped, with that reason printed, on the other
backend.

Redis: the one answering at 127.0.0.1:6379 when there is one; otherwise the suite starts its
own ``redis-server`` on a free loopback port for the session (``make tools`` installs it) and
passes its URL to pytest-xdist's workers in ``DSP_TEST_REDIS_URL``. Tests fail, never skip,
when no Redis can be had.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
import structlog

from processor.testing import WebhookReceiver, dynamodb_local, moto_server


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
            probe.sendall(b"PING\r\n")
            return probe.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _own_redis() -> str:
    """A redis-server of this session's own on a free loopback port; its URL. Stopped when
    the process that started it (pytest, or its xdist controller) exits."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError(
            "no Redis answers at 127.0.0.1:6379 and redis-server is not installed: run "
            "`make tools` (it installs Debian's redis-server) or start a Redis there"
        )
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = int(free.getsockname()[1])
    workdir = tempfile.mkdtemp(prefix="dsp-test-redis-")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    atexit.register(process.terminate)
    deadline = time.monotonic() + 10
    while not _redis_answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0"


def _redis_url() -> str:
    """The URL every test uses: given, the machine's, or our own (started once, by the
    process that loads this first; xdist workers inherit it through the environment)."""
    if "DSP_TEST_REDIS_URL" not in os.environ:
        os.environ["DSP_TEST_REDIS_URL"] = (
            "redis://127.0.0.1:6379/0" if _redis_answers(6379) else _own_redis()
        )
    return os.environ["DSP_TEST_REDIS_URL"]


REDIS_URL = _redis_url()
BACKEND = os.environ.get("DSP_TEST_BACKEND", "moto")
DYNAMODB_LOCAL_DIR = os.environ.get("DSP_TEST_DYNAMODB_LOCAL_DIR", ".cache/dynamodb-local")
BACKENDS = ("moto", "dynamodb-local")
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND not in BACKENDS:
        raise pytest.UsageError(f"DSP_TEST_BACKEND={BACKEND!r}: use one of {BACKENDS}")
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0]
        if tier in ("integration", "system"):
            item.add_marker(getattr(pytest.mark, tier))
        only = item.get_closest_marker("moto_only")
        if only is not None and BACKEND != "moto":
            reason = only.kwargs.get("reason") or (only.args[0] if only.args else "")
            item.add_marker(pytest.mark.skip(reason=f"moto only: {reason}"))
    spread_slow_tests(config, items)


def _seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("slow")
    return float(marker.kwargs.get("seconds", 10)) if marker else 0.0


def spread_slow_tests(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `pytest -n N --dist worksteal` (make test) worker k starts on the k-th of N
    contiguous slices of the collection. Put one slow test at the head of each slice (the
    rest keep their order), so the slow ones start at once on different workers instead of
    queueing behind each other (the Java cross-check alone takes two minutes)."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 0))
    if workers < 2:
        return
    slow = sorted(
        (item for item in items if item.get_closest_marker("slow")),
        key=lambda item: -_seconds(item),
    )
    rest = [item for item in items if not item.get_closest_marker("slow")]
    heads: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for index, item in enumerate(slow):
        heads[index % workers].append(item)
    size, extra = divmod(len(rest), workers)
    ordered: list[pytest.Item] = []
    start = 0
    for k in range(workers):
        end = start + size + (1 if k < extra else 0)
        ordered += heads[k] + rest[start:end]
        start = end
    items[:] = ordered


@pytest.fixture(autouse=True)
def _structlog_as_it_was() -> Iterator[None]:
    """A test that runs `dsp` in-process (`processor.cli.main`) configures structlog to print
    to the sys.stderr of that moment, which pytest closes after the test: put it back, so the
    next test in this process does not log into a closed file."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
    if BACKEND == "dynamodb-local":
        with dynamodb_local(DYNAMODB_LOCAL_DIR) as url:
            yield url
        return
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def dynamodb(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(scope="session")
def sqs(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:  # fail loudly: CI must never silently skip Redis
        pytest.fail(f"Redis is not answering at {REDIS_URL}: {exc}")
    return client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def unique() -> str:
    """A suffix that keeps tables, applications and cache names of one test apart."""
    return uuid.uuid4().hex[:8]
