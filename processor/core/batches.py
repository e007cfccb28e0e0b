"""A batch as the dispatcher handles it: split into key groups (parallelism, each key whole
and in order), a consumer called on a chunk, and what its answer means for the rest: per
key, retry from the first failed record on; what it refused goes to the dead letters."""

from __future__ import annotations

from collections.abc import Sequence

from processor.core.consumer import BatchResult
from processor.core.records import StreamRecord
from processor.core.retry import PartialFailure
from processor.core.routing import Route

__all__ = ["call_consumer", "consumer_outcome", "key_groups"]


def key_groups(records: Sequence[StreamRecord], groups: int) -> list[list[StreamRecord]]:
    """Split records into at most ``groups`` lists; one key's records all in one list, in order.

    Keys are dealt to groups in order of first appearance, so groups stay balanced.
    """
    if groups <= 1:
        return [list(records)] if records else []
    assignment: dict[str, int] = {}
    out: list[list[StreamRecord]] = [[] for _ in range(groups)]
    for record in records:
        index = assignment.setdefault(record.key_id, len(assignment) % groups)
        out[index].append(record)
    return [group for group in out if group]


def _resume_point(remaining: list[StreamRecord], failed: frozenset[str]) -> list[StreamRecord]:
    """Per key: the first failed record and everything after it, in stream order."""
    blocked: set[str] = set()
    retry = []
    for record in remaining:
        if record.key_id in blocked or record.event_id in failed:
            blocked.add(record.key_id)
            retry.append(record)
    return retry


def consumer_outcome(
    result: BatchResult,
    records: list[StreamRecord],
    attempts: int,
    rejected: list[tuple[StreamRecord, str, int]],
) -> tuple[list[StreamRecord], PartialFailure | None]:
    """After a call that reported failures: what to retry (from each key's first failure on),
    the failure to raise for it, and (appended to ``rejected``) what the consumer refused."""
    retry = _resume_point(records, result.failed_event_ids)
    retried = {r.event_id for r in retry}
    for record in records:
        if record.event_id in result.rejected and record.event_id not in retried:
            rejected.append((record, result.rejected[record.event_id], attempts))
    if not retry:
        return retry, None
    held = bool(result.held) and all(r.event_id in result.held for r in retry)
    failure = PartialFailure(
        len(result.failed_event_ids), len(retry), result.retry_after, result.reasons, held=held
    )
    return retry, failure


def call_consumer(route: Route, records: list[StreamRecord]) -> BatchResult | None:
    """One call of a route's consumer; TypeError when it answers anything but a BatchResult
    or None."""
    result = route.consumer(records)
    if result is not None and not isinstance(result, BatchResult):
        raise TypeError(
            f"consumer of route {route.name!r} returned {type(result).__name__}; "
            "expected None or processor.BatchResult"
        )
    return result
