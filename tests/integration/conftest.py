"""Real servers on 127.0.0.1, started once per session: moto server, Redis, HTTP receivers.

Redis must answer at 127.0.0.1:6379 (`.ci/run` starts one if needed): these tests fail,
never skip, when it does not.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import redis

from processor.testing import WebhookReceiver, moto_server

REDIS_URL = os.environ.get("DSP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
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
        pytest.fail(f"Redis is not answering at {REDIS_URL}: {exc} (run .ci/run, which starts it)")
    return client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def unique() -> str:
    """A suffix that keeps tables, applications and cache names of one test apart."""
    return uuid.uuid4().hex[:8]
