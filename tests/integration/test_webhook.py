"""The webhook consumer against real local HTTP receivers."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import socket
import threading
import time
from typing import Any

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from consumers.webhook import build
from processor.core.consumer import BatchResult
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.errors import ConfigError
from processor.testing import ReceivedRequest, WebhookReceiver, create_table, make_record
from processor.webhooks.egress import EgressPolicy
from processor.webhooks.signatures import verify
from tests.unit.core.test_dispatch import ListSink

from .helpers import context


def rec(
    i: int, tenant: str | None = "a", *, key: str | None = None, created: float | None = None
) -> StreamRecord:
    pk = f"TENANT#{tenant}" if tenant else "NOTENANT"
    sk = key if key is not None else str(i)
    record = make_record(
        {"pk": {"S": pk}, "sk": {"S": sk}},
        new_image={"pk": {"S": pk}, "sk": {"S": sk}, "n": {"N": "1.50"}, "i": {"N": str(i)}},
        event_id=f"evt-{tenant}-{i}",
        created=1_700_000_000.0 if created is None else created,
    )
    record.tenant = tenant  # what the dispatcher does from [tenancy]
    return record


SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
ACME_SECRET = "whsec_" + base64.b64encode(b"acme" * 8).decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()


def check_signature(secret: str, request: ReceivedRequest) -> None:
    """What a receiver does with the reference library (raises WebhookVerificationError)."""
    Webhook(secret).verify(request.body, request.headers)


def test_503_then_200_is_one_delivery_with_the_same_idempotency_key(
    receiver: WebhookReceiver,
) -> None:
    """A receiver that fails once then succeeds gets the record once, same key on each attempt."""
    receiver.script("/h", [503, 200])
    sleeps: list[float] = []
    consumer = build({"url": f"{receiver.url}/h", "secret": SECRET}, context(sleeps=sleeps))
    assert consumer([rec(1)]) is None
    keys = [req.headers["Idempotency-Key"] for req, _ in receiver.attempts]
    assert keys == ["evt-a-1", "evt-a-1"]
    assert [status for _, status in receiver.attempts] == [503, 200]
    assert len(receiver.received("/h")) == 1
    assert len(sleeps) == 1
    for request, _ in receiver.attempts:  # every attempt is signed afresh, and verifies
        check_signature(SECRET, request)
        assert request.headers["webhook-id"] == "evt-a-1"  # stable: the idempotency key


@pytest.mark.parametrize("retry_after", ["3", "HTTP-date"])
def test_retry_after_is_honoured(receiver: WebhookReceiver, retry_after: str) -> None:
    """429 with Retry-After (seconds or an HTTP date) waits at least that long."""
    if retry_after == "HTTP-date":
        retry_after = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 4))
    receiver.script("/h", [429, 200], headers={"Retry-After": retry_after})
    sleeps: list[float] = []
    consumer = build({"url": f"{receiver.url}/h"}, context(sleeps=sleeps))
    assert consumer([rec(1)]) is None
    assert sleeps
    assert sleeps[0] >= 2.5


def test_other_4xx_is_not_retried_and_the_record_is_rejected(receiver: WebhookReceiver) -> None:
    """A 400 is final: the record is rejected (dead-lettered), the next ones still delivered."""
    receiver.script("/bad", [400])
    good, bad = rec(1), rec(2)
    consumer = build({"url": f"{receiver.url}/bad"}, context())
    result = consumer([bad])
    assert isinstance(result, BatchResult)
    assert set(result.rejected) == {"evt-a-2"}
    assert "HTTP 400" in result.rejected["evt-a-2"]
    assert len(receiver.attempts) == 1
    consumer_ok = build({"url": f"{receiver.url}/ok"}, context())
    assert consumer_ok([good]) is None


def test_exhausted_retries_hold_back_only_that_key(receiver: WebhookReceiver) -> None:
    """A record that keeps failing is reported failed with the later records of its key;
    other keys, and other tenants, are delivered."""
    receiver.script("/bad", [503])
    consumer = build(
        {
            "subscriptions": [
                {"tenant": "bad", "url": f"{receiver.url}/bad"},
                {"tenant": "good", "url": f"{receiver.url}/good"},
            ],
            "max_attempts": 2,
        },
        context(),
    )
    b1, b2 = rec(1, "bad", key="x"), rec(2, "bad", key="x")
    g1, g2 = rec(3, "good", key="x"), rec(4, "good", key="y")
    result = consumer([b1, g1, b2, g2])
    assert isinstance(result, BatchResult)
    assert result.failed_event_ids == {b1.event_id, b2.event_id}
    assert {r.json()["event_id"] for r in receiver.received("/good")} == {g1.event_id, g2.event_id}
    assert len([a for a in receiver.attempts if a[0].path == "/bad"]) == 2  # b2 never sent


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
    assert result.failed_event_ids == {"evt-a-1"}
    assert len(sleeps) == 2


def test_a_read_timeout_is_retried(receiver: WebhookReceiver) -> None:
    """A receiver slower than timeout_s is a transient failure; the retry gets through."""
    receiver.script("/slow", [200], delay_s=0.5)
    consumer = build(
        {"url": f"{receiver.url}/slow", "timeout_s": 0.2, "max_attempts": 2}, context()
    )
    result = consumer([rec(1)])
    assert isinstance(result, BatchResult)
    assert result.failed_event_ids == {"evt-a-1"}
    assert consumer.breaker(f"{receiver.url}/slow").state == "closed"  # 2 < threshold 5


def test_the_total_deadline_bounds_retries(receiver: WebhookReceiver) -> None:
    """max_attempts 100 but deadline_s 0.3: the record gives up after about 0.3 s."""
    receiver.script("/h", [503])
    consumer = build(
        {
            "url": f"{receiver.url}/h",
            "max_attempts": 100,
            "deadline_s": 0.3,
            "base_delay_s": 0.05,
            "max_delay_s": 0.05,
            "breaker_threshold": 1000,
        },
        context(real_sleep=True),
    )
    result = consumer([rec(1)])
    assert isinstance(result, BatchResult)
    assert result.failed_event_ids == {"evt-a-1"}
    assert 2 <= len(receiver.attempts) < 100  # the deadline, not max_attempts, ended it


def test_body_and_signature(receiver: WebhookReceiver) -> None:
    """The body has the documented fields with exact numbers; the signature verifies."""
    consumer = build({"url": f"{receiver.url}/h", "secret": SECRET}, context(table="orders"))
    consumer([rec(7)])
    (request,) = receiver.received("/h")
    assert Webhook(SECRET).verify(request.body, request.headers) == request.json()
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    assert b'"n":1.50' in request.body
    body = request.json()
    assert body["keys"] == {"pk": "TENANT#a", "sk": "7"}
    assert body["tenant"] == "a"
    assert body["table_name"] == "orders"
    assert body["old_image"] is None
    assert request.headers["Content-Type"] == "application/json"


def test_the_shared_pool_reuses_connections_under_sustained_load(
    receiver: WebhookReceiver,
) -> None:
    """400 deliveries over 4 concurrent keys-at-a-time open at most 4 keep-alive connections."""
    consumer = build({"url": f"{receiver.url}/h"}, context())
    assert consumer.concurrency == 4  # bounded by the pool (maxsize 4)
    for batch in range(4):
        assert consumer([rec(batch * 100 + i) for i in range(100)]) is None
    assert len(receiver.received("/h")) == 400
    assert 1 <= receiver.connections <= 4
    assert consumer.connections_opened() == receiver.connections


def test_keys_are_delivered_concurrently_and_each_key_in_order(receiver: WebhookReceiver) -> None:
    """5 keys x 8 changes with a slow receiver: keys overlap in time, each key stays in order."""
    receiver.script("/h", [200], delay_s=0.02)
    consumer = build({"url": f"{receiver.url}/h", "concurrency": 4}, context())
    records = [rec(i * 5 + k, key=f"k{k}") for i in range(8) for k in range(5)]
    assert consumer(records) is None
    per_key: dict[str, list[int]] = {}
    for request in receiver.received("/h"):
        body = request.json()
        per_key.setdefault(body["keys"]["sk"], []).append(int(body["new_image"]["i"]))
    assert all(seq == sorted(seq) and len(seq) == 8 for seq in per_key.values())
    assert receiver.connections > 1  # the pool opened more than one: keys overlapped


def test_url_templates_fill_in_the_tenant(receiver: WebhookReceiver) -> None:
    """{tenant} in the URL; a record without a tenant is rejected with the reason."""
    consumer = build({"url": f"{receiver.url}/hooks/{{tenant}}"}, context())
    orphan = rec(3, None)
    result = consumer([rec(1, "acme"), rec(2, "globex"), rec(3, "a/b c"), orphan])
    paths = {r.path for r in receiver.received()}
    assert paths == {"/hooks/acme", "/hooks/globex", "/hooks/a%2Fb%20c"}  # encoded, one segment
    assert isinstance(result, BatchResult)
    assert "needs {tenant}" in result.rejected[orphan.event_id]


def test_configured_subscriptions_by_tenant_and_event(receiver: WebhookReceiver) -> None:
    """Each record goes to every matching subscription, signed with that subscription's secret."""
    consumer = build(
        {
            "secret": SECRET,
            "subscriptions": [
                {"tenant": "acme", "url": f"{receiver.url}/acme", "secret": ACME_SECRET},
                {"tenant": "acme", "url": f"{receiver.url}/acme-removes", "events": ["REMOVE"]},
                {"tenant": "*", "url": f"{receiver.url}/audit"},
            ],
        },
        context(),
    )
    insert = rec(1, "acme")
    other = rec(2, "globex")
    assert consumer([insert, other]) is None
    assert [r.json()["event_id"] for r in receiver.received("/acme")] == [insert.event_id]
    assert receiver.received("/acme-removes") == []
    assert sorted(r.json()["event_id"] for r in receiver.received("/audit")) == sorted(
        [insert.event_id, other.event_id]
    )
    (acme,) = receiver.received("/acme")
    check_signature(ACME_SECRET, acme)
    (audit, _) = receiver.received("/audit")
    check_signature(SECRET, audit)
    with pytest.raises(WebhookVerificationError):
        check_signature(SECRET, acme)


def test_a_secret_rotation_verifies_with_either_secret(receiver: WebhookReceiver) -> None:
    """With secrets = [new, old], one v1 signature per secret: both receivers verify."""
    consumer = build({"url": f"{receiver.url}/r", "secrets": [NEW_SECRET, SECRET]}, context())
    consumer([rec(1)])
    (request,) = receiver.received("/r")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    check_signature(NEW_SECRET, request)
    check_signature(SECRET, request)
    with pytest.raises(WebhookVerificationError):
        check_signature(ACME_SECRET, request)


def test_the_legacy_x_dsp_format_stays_selectable(receiver: WebhookReceiver) -> None:
    """signature = "x-dsp" keeps the old headers for receivers written against them."""
    options = {"url": f"{receiver.url}/l", "secret": "plain", "signature": "x-dsp"}
    build(options, context())([rec(1)])
    (request,) = receiver.received("/l")
    headers = request.headers
    verify("plain", request.body, headers["X-DSP-Signature"], headers["X-DSP-Timestamp"])
    assert "webhook-signature" not in {k.lower() for k in headers}


def test_a_table_subscription_with_a_non_standard_secret_is_dead_lettered(
    endpoint: str, dynamodb: Any, unique: str, receiver: WebhookReceiver
) -> None:
    """A tenant's secret that is not a whsec_ key rejects its records (stored, not retried)."""
    table = f"subs-{unique}"
    create_table(dynamodb, table, keys=("tenant",), stream_view=None)
    item = {"tenant": {"S": "a"}, "url": {"S": f"{receiver.url}/t"}, "secret": {"S": "plain"}}
    dynamodb.put_item(TableName=table, Item=item)
    ctx = dataclasses.replace(
        context(endpoint=endpoint),
        egress=EgressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),)),
    )
    result = build({"subscriptions_table": table}, ctx)([rec(1)])
    assert result is not None
    assert "not a Standard Webhooks key" in result.rejected["evt-a-1"]
    assert "plain" not in result.rejected["evt-a-1"]
    assert receiver.attempts == []


def test_a_record_with_several_subscriptions_is_not_resent_to_those_that_had_it(
    receiver: WebhookReceiver,
) -> None:
    receiver.script("/flaky", [503, 503, 200])
    consumer = build(
        {
            "subscriptions": [
                {"url": f"{receiver.url}/steady"},
                {"url": f"{receiver.url}/flaky"},
            ],
            "max_attempts": 2,
        },
        context(),
    )
    record = rec(1)
    first = consumer([record])
    assert isinstance(first, BatchResult)
    assert first.failed_event_ids == {record.event_id}
    assert consumer([record]) is None  # the engine's retry
    assert len(receiver.received("/steady")) == 1
    assert len(receiver.received("/flaky")) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of url, subscriptions, subscriptions_table"),
        ({"url": "http://x/{tenant}", "subscriptions": []}, "got url, subscriptions"),
        ({"url": "http://x/{pk}"}, "only placeholder"),
        ({"url": "ftp://x/"}, "http:// or https://"),
        ({"url": "http://x/", "on_unavailable": "drop"}, "wait"),
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        build(options, context())


def test_a_missing_subscriptions_table_stops_the_start(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="subscriptions_table"):
        build({"subscriptions_table": "no-such-table"}, context(endpoint=endpoint))


# -- a receiver that is down for a while -------------------------------------------------------


def _outage_options(receiver: WebhookReceiver, policy: str) -> dict[str, Any]:
    return {
        "url": f"{receiver.url}/h",
        "on_unavailable": policy,
        "breaker_threshold": 3,
        "breaker_cool_down_s": 0.2,
        "max_attempts": 3,
        "base_delay_s": 0.01,
        "max_delay_s": 0.02,
    }


def test_receiver_down_for_a_while_with_on_unavailable_wait(receiver: WebhookReceiver) -> None:
    """Through the engine: the breaker opens, the host's records are held (reported failed with
    retry_after = the breaker's next probe) and retried under [batch], probing once per
    cool-down; after the outage every record arrives exactly once, each key in order, and
    nothing is dead-lettered."""
    ctx = context(real_sleep=True)
    consumer = build(_outage_options(receiver, "wait"), ctx)
    sink = ListSink()
    dispatcher = Dispatcher(
        [Route("hooks", consumer)],
        sink,
        RetryPolicy(max_retries=1000, bisect_on_error=False, base_delay_s=0.01, max_delay_s=0.3),
        stats={"hooks": ctx.stats},
        stop=threading.Event(),
    )
    now = time.time()
    records = [rec(i * 3 + k, key=f"k{k}", created=now) for i in range(4) for k in range(3)]
    receiver.down_status = 503
    engine = threading.Thread(target=dispatcher.dispatch, args=(records,))
    engine.start()
    time.sleep(1.5)
    with receiver._lock:
        attempts_while_down = len(receiver.attempts)
        receiver.down_status = None
    engine.join(timeout=30)
    assert not engine.is_alive()
    assert sink.entries == []
    received = [r.json() for r in receiver.received("/h")]
    assert sorted(b["event_id"] for b in received) == sorted(r.event_id for r in records)
    for k in range(3):
        order = [int(b["new_image"]["i"]) for b in received if b["keys"]["sk"] == f"k{k}"]
        assert order == sorted(order)
    # 1.5 s down at one probe per 0.2 s: nowhere near hammering (3 keys x 3 attempts + probes)
    assert attempts_while_down <= 3 * 3 + 1.5 / 0.2 + 3
    stats = ctx.stats.snapshot()
    assert stats["circuit_opened"] >= 1
    assert stats["circuit_closed"] >= 1
    assert stats["unavailable_held"] >= 1
    assert stats["delivered"] == 12


def test_receiver_down_for_a_while_with_on_unavailable_dead_letter(
    receiver: WebhookReceiver,
) -> None:
    """The breaker opens and the records meanwhile are rejected (dead-lettered) with the reason,
    so the shard moves on; after the outage the next batch is delivered."""
    ctx = context(real_sleep=True)
    consumer = build(_outage_options(receiver, "dead_letter"), ctx)
    records = [rec(i) for i in range(20)]
    receiver.down_status = 503
    result = consumer(records)
    assert isinstance(result, BatchResult)
    assert not result.failed_event_ids
    assert set(result.rejected) == {r.event_id for r in records}
    assert all("receiver unavailable: circuit open" in why for why in result.rejected.values())
    assert len(receiver.attempts) <= 3 * 4  # only until the breaker opened
    receiver.down_status = None
    time.sleep(0.25)  # the cool-down: the next call probes and closes the breaker
    later = [rec(100 + i) for i in range(5)]
    assert consumer(later) is None
    assert len(receiver.received("/h")) == 5


# -- tenants -------------------------------------------------------------------------------------


def test_a_noisy_tenant_does_not_queue_ahead_of_a_quiet_one(receiver: WebhookReceiver) -> None:
    """One connection at a time, 100 noisy records ahead of 10 quiet ones in the batch: the
    quiet tenant's records go out in alternation, all within the first 20 posts (FIFO would
    put them last)."""
    consumer = build({"url": f"{receiver.url}/{{tenant}}", "concurrency": 1}, context())
    records = [rec(i, "noisy") for i in range(100)] + [rec(i, "quiet") for i in range(10)]
    assert consumer(records) is None
    paths = [r.path for r in receiver.received()]
    assert len(paths) == 110
    quiet_positions = [i for i, p in enumerate(paths) if p == "/quiet"]
    assert max(quiet_positions) < 20


def test_a_rate_limited_tenant_does_not_hold_back_the_others(receiver: WebhookReceiver) -> None:
    """The noisy tenant is held to 20/s (burst 5); the quiet one, unlimited, is delivered while
    the noisy backlog drains, and the noisy tenant's rate is what was configured."""
    consumer = build(
        {
            "url": f"{receiver.url}/{{tenant}}",
            "tenant_rates": {"noisy": 20.0},
            "tenant_burst": 5,
        },
        context(),
    )
    records = [rec(i, "noisy") for i in range(25)] + [rec(i, "quiet") for i in range(10)]
    assert consumer(records) is None
    received = receiver.received()
    noisy = [r.received_at for r in received if r.path == "/noisy"]
    quiet = [r.received_at for r in received if r.path == "/quiet"]
    assert len(noisy) == 25
    assert len(quiet) == 10
    assert max(quiet) < sorted(noisy)[10]  # the quiet tenant finished before the noisy one's 11th
    # 20 tokens after the burst of 5 take about 1 s at 20/s
    assert noisy[-1] - noisy[0] >= (25 - 5) / 20.0 * 0.9


def test_a_record_with_a_malformed_image_is_rejected_not_retried(receiver: WebhookReceiver) -> None:
    """A body that cannot be built is a rejection (dead-lettered at once), never a retry."""
    record = make_record(
        {"pk": {"S": "TENANT#a"}, "sk": {"S": "1"}},
        new_image={"pk": {"S": "TENANT#a"}, "sk": {"S": "1"}, "empty_m": {}},
        event_id="evt-bad",
    )
    result = build({"url": f"{receiver.url}/m"}, context())([record])
    assert result is not None
    assert "malformed" in result.rejected["evt-bad"]
    assert not result.failed_event_ids
    assert receiver.attempts == []


def test_a_dead_letter_carries_the_last_status_body_host_and_attempts(
    receiver: WebhookReceiver,
) -> None:
    """Retries exhausted against a 503: the letter says HTTP 503, an excerpt of the body, the
    host and the attempt count, not just "consumer reported 1 of 1 records failed"."""
    receiver.down_status = 503
    ctx = context()
    consumer = build(
        {"url": f"{receiver.url}/down", "max_attempts": 2, "breaker_threshold": 100}, ctx
    )
    sink = ListSink()
    dispatcher = Dispatcher(
        [Route("hooks", consumer)],
        sink,
        RetryPolicy(max_retries=1, bisect_on_error=False, base_delay_s=0.001, max_delay_s=0.001),
        stats={"hooks": ctx.stats},
        stop=threading.Event(),
    )
    dispatcher.dispatch([rec(1, key="k"), rec(2, key="k")])
    letters = {entry.record["eventID"]: entry for entry in sink.entries}
    assert set(letters) == {"evt-a-1", "evt-a-2"}
    first = letters["evt-a-1"].error_message
    host = receiver.url.split("//")[1]
    assert "HTTP 503" in first
    assert "scripted" in first  # an excerpt of the receiver's body
    assert host in first
    assert "2 attempts" in first
    assert "evt-a-1" in letters["evt-a-2"].error_message  # held back behind the first


def test_an_outage_of_several_cool_downs_with_default_settings_loses_nothing(
    receiver: WebhookReceiver,
) -> None:
    """Issue 15, item 3. Default [batch] retry policy and default webhook breaker, on a clock
    the test drives: the receiver answers 503 for 20 cool-downs (10 minutes). Every record is held
    while the breaker is open, probes once per cool-down, and is delivered once the receiver
    is back: nothing dead-lettered (before: dead-lettered within about a minute, because
    each hold spent a retry and each wait was capped at retry_max_delay_s = 20 s)."""
    start = time.time()
    now = [start]
    outage_s = 600.0

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] - start >= outage_s:
            receiver.down_status = None

    ctx = dataclasses.replace(context(), sleep=sleep, clock=clock)
    consumer = build({"url": f"{receiver.url}/h"}, ctx)  # on_unavailable = "wait", 30 s
    sink = ListSink()
    dispatcher = Dispatcher(
        [Route("hooks", consumer)],
        sink,
        RetryPolicy(),  # max_retries = 3, retry_max_delay_s = 20: the defaults
        stats={"hooks": ctx.stats},
        stop=threading.Event(),
        sleep=sleep,
        clock=clock,
    )
    # written just now (make_record's default stamp is from 2023, past the 24 h retention)
    records = [rec(i * 3 + k, key=f"k{k}", created=start) for i in range(3) for k in range(3)]
    receiver.down_status = 503
    dispatcher.dispatch(records)
    assert [e.error_message for e in sink.entries] == []
    received = [r.json()["event_id"] for r in receiver.received("/h")]
    assert sorted(received) == sorted(r.event_id for r in records)
    assert now[0] - start >= outage_s
    stats = ctx.stats.snapshot()
    assert stats["circuit_opened"] >= 1
    # one probe per cool-down while down, not a retry storm
    probes = len(receiver.attempts) - len(records)
    assert probes <= 5 + outage_s / 30 + 2
