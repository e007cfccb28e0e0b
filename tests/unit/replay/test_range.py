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
