"""The reorder and dedupe window: releases are prefixes of the arrivals (a checkpoint never
passes a held record), each key in creation order, exact duplicates dropped."""

from __future__ import annotations

from typing import Any

from processor.core.records import StreamRecord
from processor.core.reorder import ReorderWindow
from processor.testing import make_record


def change(key: str, seq: int, created: float, n: int = 0, **kw: Any) -> StreamRecord:
    image = {"pk": {"S": key}, "n": {"N": str(n)}}
    return make_record(
        {"pk": {"S": key}},
        event_name="MODIFY",
        new_image=image,
        sequence_number=str(seq),
        created=created,
        **kw,
    )


def order(records: list[StreamRecord]) -> list[tuple[str, int]]:
    return [(r.keys["pk"], int(r.sequence_number)) for r in records]


def test_records_are_held_for_the_window_then_released_oldest_first() -> None:
    """Nothing comes out before the window passes; then a prefix, at most ``limit``."""
    window = ReorderWindow(1.0)
    window.add([change("a", 1, 100.0), change("b", 2, 100.0)], now=10.0)
    window.add([change("c", 3, 100.0)], now=10.5)
    assert window.release(10.9, limit=100) == []
    assert order(window.release(11.0, limit=1)) == [("a", 1)]
    assert order(window.release(11.2, limit=100)) == [("b", 2)]  # c arrived later: held
    assert order(window.release(11.5, limit=100)) == [("c", 3)]
    assert len(window) == 0


def test_each_keys_changes_come_out_in_creation_order_in_their_own_slots() -> None:
    """a arrived as created 3, 1, 2; b's slot between stays b's."""
    window = ReorderWindow(0.5)
    arrivals = [change("a", 1, 103.0, 3), change("b", 2, 100.0), change("a", 3, 101.0, 1)]
    window.add([*arrivals, change("a", 4, 102.0, 2)], now=0.0)
    out = window.release(1.0, limit=100)
    assert order(out) == [("a", 3), ("b", 2), ("a", 4), ("a", 1)]
    assert [r.new_image["n"] for r in out if r.keys["pk"] == "a"] == [1, 2, 3]  # type: ignore[index]


def test_a_release_is_a_prefix_so_a_checkpoint_at_its_highest_sequence_is_safe() -> None:
    """Whatever is still held has a higher sequence number than anything released."""
    window = ReorderWindow(1.0)
    for second in range(10):
        window.add([change(f"k{second % 3}", second, 200.0 - second)], now=float(second))
    released = window.release(5.0, limit=100)
    held = window.release(0.0, limit=100, flush=True)
    assert max(int(r.sequence_number) for r in released) < min(int(r.sequence_number) for r in held)


def test_exact_duplicates_are_dropped_and_counted() -> None:
    """Same eventID, or same key + creation time + images under another eventID: dropped.
    The same key and time with another image is a different change: kept."""
    window = ReorderWindow(0.0)
    first = change("a", 1, 100.0, 1, event_id="e1")
    window.add([first], now=0.0)
    window.add([change("a", 2, 100.0, 1, event_id="e1")], now=0.0)  # redelivered
    window.add([change("a", 3, 100.0, 1, event_id="e9")], now=0.0)  # same change, new id
    window.add([change("a", 4, 100.0, 2, event_id="e2")], now=0.0)  # another image
    assert order(window.release(0.0, limit=100)) == [("a", 1), ("a", 4)]
    assert window.duplicates == 2


def test_flush_releases_everything_held() -> None:
    """At a shard's end nothing may stay behind."""
    window = ReorderWindow(60.0)
    window.add([change("a", 1, 1.0), change("a", 2, 2.0)], now=0.0)
    assert order(window.release(0.0, limit=100, flush=True)) == [("a", 1), ("a", 2)]
