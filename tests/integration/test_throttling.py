"""batch_write against a DynamoDB that throttles (a proxy in front of the moto server)."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.batch_write import build
from processor.core.records import StreamRecord
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
