"""The webhook consumer against a real local HTTP receiver."""

from __future__ import annotations

import hmac
import socket

from consumers.webhook import build, sign
from processor.consumer import BatchResult
from processor.records import StreamRecord
from processor.testing import WebhookReceiver, make_record

from .helpers import context


def rec(i: int) -> StreamRecord:
    return make_record(
        {"pk": {"S": "TENANT#a"}, "sk": {"S": str(i)}},
        new_image={"pk": {"S": "TENANT#a"}, "sk": {"S": str(i)}, "n": {"N": "1.50"}},
        event_id=f"evt-{i}",
    )


def test_503_then_200_is_one_delivery_with_the_same_idempotency_key(
    receiver: WebhookReceiver,
) -> None:
    """A receiver that fails once then succeeds gets the record once, same key on each attempt."""
    receiver.script("/h", [503, 200])
    sleeps: list[float] = []
    consumer = build({"url": f"{receiver.url}/h", "secret": "s"}, context(sleeps=sleeps))
    assert consumer([rec(1)]) is None
    keys = [req.headers["Idempotency-Key"] for req, _ in receiver.attempts]
    assert keys == ["evt-1", "evt-1"]
    assert [status for _, status in receiver.attempts] == [503, 200]
    assert len(receiver.received("/h")) == 1
    assert len(sleeps) == 1


def test_retry_after_is_honoured(receiver: WebhookReceiver) -> None:
    """429 with Retry-After waits at least that long before the next attempt."""
    receiver.script("/h", [429, 200], headers={"Retry-After": "3"})
    sleeps: list[float] = []
    consumer = build({"url": f"{receiver.url}/h"}, context(sleeps=sleeps))
    consumer([rec(1)])
    assert sleeps
    assert sleeps[0] >= 3


def test_other_4xx_is_not_retried_and_the_record_is_rejected(receiver: WebhookReceiver) -> None:
    """A 400 is final: the record is rejected (dead-lettered), the next ones still delivered."""
    receiver.script("/bad", [400])
    good, bad = rec(1), rec(2)
    consumer = build({"url": f"{receiver.url}/bad"}, context())
    result = consumer([bad])
    assert isinstance(result, BatchResult)
    assert set(result.rejected) == {"evt-2"}
    assert "HTTP 400" in result.rejected["evt-2"]
    assert len(receiver.attempts) == 1
    consumer_ok = build({"url": f"{receiver.url}/ok"}, context())
    assert consumer_ok([good]) is None


def test_exhausted_retries_report_the_rest_of_the_batch_failed(receiver: WebhookReceiver) -> None:
    """When one record keeps failing, it and everything after it are reported failed."""
    receiver.script("/h", [200, 503])
    consumer = build({"url": f"{receiver.url}/h", "max_attempts": 2}, context())
    result = consumer([rec(1), rec(2), rec(3)])
    assert isinstance(result, BatchResult)
    assert result.failed_event_ids == {"evt-2", "evt-3"}


def test_connection_refused_is_transient() -> None:
    """A receiver that is down gives a retried transient failure, not a rejection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    consumer = build(
        {"url": f"http://127.0.0.1:{port}/h", "max_attempts": 3}, context(sleeps=sleeps)
    )
    result = consumer([rec(1)])
    assert isinstance(result, BatchResult)
    assert result.failed_event_ids == {"evt-1"}
    assert len(sleeps) == 2


def test_body_and_signature(receiver: WebhookReceiver) -> None:
    """The body has the documented fields with exact numbers; the signature verifies."""
    consumer = build({"url": f"{receiver.url}/h", "secret": "topsecret"}, context(table="orders"))
    consumer([rec(7)])
    (request,) = receiver.received("/h")
    assert hmac.compare_digest(request.headers["X-DSP-Signature"], sign(request.body, "topsecret"))
    assert b'"n":1.50' in request.body
    body = request.json()
    assert body["keys"] == {"pk": "TENANT#a", "sk": "7"}
    assert body["table_name"] == "orders"
    assert body["old_image"] is None
    assert request.headers["Content-Type"] == "application/json"


def test_the_shared_pool_reuses_connections(receiver: WebhookReceiver) -> None:
    """Many deliveries through the pooled client open one keep-alive connection."""
    consumer = build({"url": f"{receiver.url}/h"}, context())
    consumer([rec(i) for i in range(50)])
    assert len(receiver.received("/h")) == 50
    assert receiver.connections == 1
    assert consumer.connections_opened() == 1
