"""batch_write against a DynamoDB that throttles (a proxy in front of the moto server)."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.batch_write import build
from processor.aws import make_clients
from processor.core.records import StreamRecord
from processor.errors import TransientError
from processor.testing import ThrottlingProxy, create_table, make_record, scan_all

from .helpers import context


def records(n: int) -> list[StreamRecord]:
    return [
        make_record(
            {"pk": {"S": f"t{i % 9}"}, "sk": {"S": f"{i:05d}"}},
            event_name="INSERT",
            new_image={"pk": {"S": f"t{i % 9}"}, "sk": {"S": f"{i:05d}"}, "v": {"N": str(i)}},
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(("throttle_every", "partial_every"), [(3, None), (None, 2), (4, 3)])
def test_throttling_and_unprocessed_items_lose_no_item(
    endpoint: str, dynamodb: Any, unique: str, throttle_every: int | None, partial_every: int | None
) -> None:
    """Throttled calls and UnprocessedItems are retried with backoff until every item lands."""
    table = f"throttled-{unique}"
    create_table(dynamodb, table, stream_view=None)
    sleeps: list[float] = []
    with ThrottlingProxy(
        endpoint, throttle_every=throttle_every, partial_every=partial_every
    ) as proxy:
        ctx = context(endpoint=proxy.endpoint, sleeps=sleeps)
        consumer = build({"table": table, "max_attempts": 20}, ctx)
        consumer(records(300))
        assert proxy.calls["throttled"] + proxy.calls["unprocessed_items"] > 0
        # the table's rate was cut on throttling (multiplicative decrease)...
        assert consumer.rate.lowest is not None
        assert ctx.stats["throttled"] > 0
    assert len(scan_all(dynamodb, table)) == 300
    if partial_every:  # UnprocessedItems are ours to resend (botocore retries the throttles)
        assert sleeps, "backoff happened between resends"
        assert all(s <= 5.0 for s in sleeps)


def test_every_write_the_table_sees_was_paced_by_the_writer(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """botocore does not retry the writer's calls, whatever ``[aws] max_attempts`` says: a
    throttled BatchWriteItem comes straight back to the pacer, which decides when it goes
    again, through the consumer's injectable sleep. When botocore retried it (up to a second
    of its own backoff, on the real clock), a batch's last writes sat there while the table
    idled (issue 32: the capacity minimums)."""
    table = f"throttled-paced-{unique}"
    create_table(dynamodb, table, stream_view=None)
    with ThrottlingProxy(endpoint, throttle_every=2) as proxy:
        ctx = context(endpoint=proxy.endpoint)  # clients with max_attempts=3
        consumer = build({"table": table, "max_attempts": 20}, ctx)
        consumer(records(300))
        consumer.close()
        assert proxy.calls["throttled"] > 0
        assert proxy.calls["BatchWriteItem"] == ctx.stats["batch_write_calls"]
    assert len(scan_all(dynamodb, table)) == 300


def test_other_calls_keep_botocores_retries(endpoint: str) -> None:
    """Only the writer's client makes each call once; the process's clients still retry, and
    ``max_attempts`` counts every attempt, as ``aws.max_attempts`` says (botocore's own
    ``max_attempts`` counts retries: 3 made 4 attempts)."""
    clients = make_clients(
        region="us-east-1", endpoint_url=endpoint, retry_mode="standard", max_attempts=3,
        pool_size=2,
    )  # fmt: skip
    once = clients.unretried("dynamodb")
    assert once is clients.unretried("dynamodb")  # made once, shared
    assert once is not clients.dynamodb
    assert once.meta.config.retries["total_max_attempts"] == 1
    assert clients.dynamodb.meta.config.retries["total_max_attempts"] == 3


def holding_writer(proxy: ThrottlingProxy, table: str, sleeps: list[float], **options: Any) -> Any:
    """A batch writer whose recorded sleeps show its waits after refusals: at 1,000 items/s
    the pacer's own waits for 10 items stay far shorter."""
    ctx = context(endpoint=proxy.endpoint, sleeps=sleeps)
    return build({"table": table, "min_rate_per_s": 1000.0, **options}, ctx)


def test_a_call_the_table_refuses_whole_waits_before_it_goes_again(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """Nothing fitted: the writes wait ``base_delay_s`` doubled per refusal (the second half
    at random, at most ``max_delay_s``) before they go back, so ``max_attempts`` refusals
    span time rather than the pacer's few milliseconds; no wait after the last one."""
    table = f"throttled-whole-{unique}"
    create_table(dynamodb, table, stream_view=None)
    sleeps: list[float] = []
    with ThrottlingProxy(endpoint, throttle_every=1) as proxy:
        consumer = holding_writer(
            proxy, table, sleeps, max_attempts=4, base_delay_s=0.25, max_delay_s=0.75
        )
        with pytest.raises(TransientError, match="after up to 4 attempts"):
            consumer(records(10))
        consumer.close()
        assert proxy.calls["BatchWriteItem"] == 4
    holds = [s for s in sleeps if s >= 0.1]  # the pacer's waits for 10 items are shorter
    assert len(holds) == 3
    for hold, ceiling in zip(holds, [0.25, 0.5, 0.75], strict=True):
        assert ceiling / 2 <= hold <= ceiling


def test_the_wait_doubles_per_refusal_not_per_ride_and_rides_are_not_attempts(
    endpoint: str, dynamodb: Any, unique: str
) -> None:
    """A write that rode three partial calls, then a call refused whole, waits as for a first
    refusal: a hot partition's leftovers ride many partial calls, and a wait doubled per ride
    held them for seconds while the table had room (the capacity benchmark's 56 % round).
    ``max_attempts`` (2 here) counts refusals only: the four calls do not exhaust it."""
    table = f"throttled-rides-{unique}"
    create_table(dynamodb, table, stream_view=None)
    sleeps: list[float] = []
    # calls 1-3 write the first half of what they carry, call 4 is refused whole
    with ThrottlingProxy(endpoint, throttle_every=4, partial_every=1) as proxy:
        consumer = holding_writer(
            proxy, table, sleeps, max_attempts=2, base_delay_s=1.0, max_delay_s=10.0
        )
        consumer(records(10))
        consumer.close()
        assert proxy.calls["throttled"] == 1
    holds = [s for s in sleeps if s >= 0.5]
    assert len(holds) == 1
    assert 0.5 <= holds[0] <= 1.0  # a write's fourth call: 4 to 8 s when it doubled per ride
    assert len(scan_all(dynamodb, table)) == 10
