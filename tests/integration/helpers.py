"""Building consumers the way the worker does, for tests."""

from __future__ import annotations

import threading
import time
from typing import Any

import urllib3

from processor.aws import AwsClients, make_clients
from processor.consumer import ConsumerContext, StreamInfo


def clients(endpoint: str) -> AwsClients:
    return make_clients(
        region="us-east-1",
        endpoint_url=endpoint,
        retry_mode="standard",
        max_attempts=3,
        pool_size=10,
    )


def context(
    *,
    endpoint: str | None = None,
    table: str = "orders",
    view: str = "NEW_AND_OLD_IMAGES",
    http: urllib3.PoolManager | None = None,
    sleeps: list[float] | None = None,
    memory: dict[str, Any] | None = None,
    real_sleep: bool = False,
) -> ConsumerContext:
    """A consumer context; sleeps are recorded (and skipped unless ``real_sleep``)."""
    recorded = sleeps if sleeps is not None else []

    def sleep(seconds: float) -> None:
        recorded.append(seconds)
        if real_sleep:
            time.sleep(seconds)

    return ConsumerContext(
        route="test",
        config_key="routes.0",
        stream=StreamInfo(
            "arn:aws:dynamodb:us-east-1:1:table/orders/stream/x", table, view, ("pk", "sk")
        ),
        clients=clients(endpoint) if endpoint else None,
        http=http or urllib3.PoolManager(maxsize=4, retries=False),
        memory_caches=memory if memory is not None else {},
        sleep=sleep,
        stop=threading.Event(),
    )
