"""A shard position older than the retention (``TrimmedDataError``): which records were lost,
and what ``stream.on_trimmed`` makes of it (``fail``: stop the shard, naming the range;
``skip``: an ERROR naming the range, then on from the trim horizon). Never silent."""

from __future__ import annotations

import structlog

from processor.errors import TrimmedDataError
from processor.sources.base import StreamSource

__all__ = ["first_available", "skip_trimmed"]

log = structlog.get_logger()


def first_available(source: StreamSource, stream_arn: str, shard_id: str) -> str | None:
    """The first sequence number still in the shard (peeks from TRIM_HORIZON)."""
    iterator: str | None = source.get_iterator(stream_arn, shard_id, "TRIM_HORIZON")
    for _ in range(5):  # real shards may answer empty pages before the first record
        if iterator is None:
            return None
        page = source.get_records(iterator, limit=1, shard_id=shard_id)
        if page.records:
            return page.records[0].sequence_number
        iterator = page.next_iterator
    return None


def skip_trimmed(
    exc: TrimmedDataError,
    shard_id: str,
    *,
    lost_after: str | None,
    first: str | None,
    on_trimmed: str,
    source: StreamSource,
) -> None:
    """Raise ``TrimmedDataError`` naming the lost range (``fail``), or log it as an ERROR and
    return (``skip``: the caller goes on from the trim horizon)."""
    start = f"after {lost_after}" if lost_after else "from the start of the shard"
    end = f"up to before {first}" if first else "up to the trim horizon"
    lost = f"{start} {end}"
    if on_trimmed != "skip":
        raise TrimmedDataError(
            f"shard {shard_id}: records {lost} were trimmed (older than the stream's "
            f"{source.retention_s / 3600:g} h retention) before they were read; set "
            'stream.on_trimmed = "skip" to go on',
            shard_id=shard_id,
            sequence_number=lost_after,
        ) from exc
    log.error(
        "trimmed_data_skipped",
        lost_after=lost_after,
        lost_before=first,
        lost_range=lost,
        policy="skip",
    )
