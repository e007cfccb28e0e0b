"""Which records a replay from a time delivers, given how coarse the source's clock is."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from processor.replay.range import ReplayRange, parse_bound
from processor.testing import make_record


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("granularity", "stamped", "kept"),
    [
        # AWS rounds down to the second: a change at 12:03:30.7 is stamped 12:03:30
        (1, "2026-11-23T12:03:30", True),
        (1, "2026-11-23T12:03:29", False),
        # DynamoDB Local rounds down to the minute: the same change is stamped 12:03:00
        (60, "2026-11-23T12:03:00", True),
        (60, "2026-11-23T12:02:00", False),
    ],
)
def test_a_replay_from_a_time_never_skips_a_record_whose_true_time_could_be_in_range(
    granularity: float, stamped: str, kept: bool
) -> None:
    """From 12:03:30.5: every record whose rounded stamp could hide a time at or after the
    bound is delivered; only records certainly before it are skipped."""
    window = ReplayRange(
        parse_bound("2026-11-23T12:03:30.5Z", flag="--from", allow_trim=False),
        granularity_s=granularity,
    )
    record = make_record({"pk": {"S": "a"}}, created=at(stamped))
    delivered, ended = window.window([record])
    assert (delivered == [record]) is kept
    assert not ended


def test_the_end_bound_keeps_records_stamped_at_or_before_it() -> None:
    """To 12:05:30 at minute granularity: a record stamped 12:05:00 may be from 12:05:59,
    but may also be in range, so it is delivered; one stamped 12:06:00 ends the range."""
    window = ReplayRange(
        parse_bound("2026-11-23T12:00:00Z", flag="--from", allow_trim=False),
        parse_bound("2026-11-23T12:05:30Z", flag="--to", allow_trim=False),
        granularity_s=60,
    )
    inside = make_record({"pk": {"S": "a"}}, created=at("2026-11-23T12:05:00"))
    after = make_record({"pk": {"S": "b"}}, created=at("2026-11-23T12:06:00"))
    delivered, ended = window.window([inside, after])
    assert delivered == [inside]
    assert ended


def test_a_replay_from_a_time_starts_at_a_timestamp_where_the_source_can() -> None:
    """Kinesis starts iterators at an arrival time (a minute early, for disagreeing clocks);
    DynamoDB Streams cannot, so its shards are read from the trim horizon; sequence bounds
    are unchanged either way."""
    from processor.leases.model import Lease  # noqa: PLC0415

    lease = Lease("shardId-000000000000", "w1", 1, 0.0)
    start = parse_bound("2026-11-23T12:03:30.5Z", flag="--from", allow_trim=False)
    kinesis = ReplayRange(start, at_timestamp=True)
    assert kinesis.position_for(None, lease) == (
        "AT_TIMESTAMP", repr(at("2026-11-23T12:03:30") - 60),
    )  # fmt: skip
    assert ReplayRange(start).position_for(None, lease) == ("TRIM_HORIZON", None)
    by_sequence = parse_bound(
        "49650000000000000000000000000000000000000000000017", flag="--from", allow_trim=True
    )
    assert ReplayRange(by_sequence, at_timestamp=True).position_for(None, lease) == (
        "TRIM_HORIZON", None,
    )  # no shard known: from its start, as on DynamoDB Streams  # fmt: skip
