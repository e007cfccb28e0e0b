"""A custom consumer for the Lambda handler tests, steered by flags in the NewImage."""

from __future__ import annotations

from collections.abc import Sequence

from processor import BatchResult, StreamRecord

DELIVERED: list[str] = []


def steered(records: Sequence[StreamRecord]) -> BatchResult | None:
    """`explode`: the whole call fails; `fail`: that record fails; `reject`: it never can."""
    images = [(r, r.new_image or {}) for r in records]
    if any(image.get("explode") for _, image in images):
        raise RuntimeError("downstream unavailable")
    failed = [r for r, image in images if image.get("fail")]
    rejected = {r.event_id: "HTTP 422" for r, image in images if image.get("reject")}
    blocked: set[str] = set()
    for record in records:  # a well-behaved consumer stops a key at its first failure
        if record in failed or record.key_id in blocked:
            blocked.add(record.key_id)
        elif record.event_id not in rejected:
            DELIVERED.append(record.sequence_number)
    if failed or rejected:
        return BatchResult.failed(failed, rejected=rejected)
    return None
