"""Coalesced checkpoints (ADR 0028): the batches a pipeline handles while its reader is
behind share one lease-table write, made after the last of them is handled.

A conditional ``UpdateItem`` per batch of 100 was the largest per-record cost of the whole
process (about half of it, reading a stream from its start); one per page was still the
largest single cost after the page decode. A coalesced checkpoint is never written before
the records it covers are handled. It is written when the reader catches up (an empty page,
before it waits for the next poll), once ``COALESCE_S`` passed since it became pending (at
the next batch or before the next GetRecords), before any plain checkpoint (in the same
write, when the plain one is not past it) and before the run ends. A crash loses at most
the pending part: those records are read again by the next owner, as the at-least-once
contract already allows."""

from __future__ import annotations

from collections.abc import Callable

import structlog

__all__ = ["COALESCE_S", "Coalescer"]

log = structlog.get_logger()

#: a handled batch's checkpoint waits at most this long for the batches after it
COALESCE_S = 1.0

#: (sequence number, finished, handled time, window states) -> the lease-table write
Write = Callable[[str | None, bool, float | None, str | None], None]


class Coalescer:
    """Joins coalescable checkpoints until the next flush, plain checkpoint or deadline."""

    def __init__(self, write: Write, monotonic: Callable[[], float]) -> None:
        self._write = write
        self._monotonic = monotonic
        #: the checkpoint not yet written: (sequence number, handled time, window states)
        self._pending: tuple[str | None, float | None, str | None] | None = None
        self._pending_since = 0.0

    @property
    def due(self) -> bool:
        """A checkpoint has been pending for ``COALESCE_S`` or longer."""
        if self._pending is None:
            return False
        return self._monotonic() - self._pending_since >= COALESCE_S

    def commit(
        self,
        sequence_number: str | None,
        finished: bool,
        handled_time: float | None,
        window_state: str | None,
        *,
        coalesce: bool,
    ) -> None:
        if coalesce and not finished:
            if self._pending is None:
                self._pending_since = self._monotonic()
            self._pending = (sequence_number, handled_time, window_state)
            if self._monotonic() - self._pending_since < COALESCE_S:
                return
        pending, self._pending = self._pending, None
        if pending is not None and _after(pending[0], sequence_number):  # one write for both
            sequence_number, handled_time = pending[0], pending[1]
            window_state = pending[2] if window_state is None else window_state
        self._write(sequence_number, finished, handled_time, window_state)

    def flush(self, *, quietly: bool = False) -> None:
        """Write the pending checkpoint, if any. ``quietly`` (at a run's end): a failure is
        logged; the records after the stored checkpoint are read again by the next owner, as
        after a crash."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            self._write(pending[0], False, pending[1], pending[2])
        except Exception:
            if not quietly:
                raise
            log.warning("pending_checkpoint_not_written", exc_info=True)


def _after(sequence: str | None, other: str | None) -> bool:
    """``sequence`` is past ``other`` (sequence numbers are decimal strings)."""
    if sequence is None:
        return False
    return other is None or (len(sequence), sequence) > (len(other), other)
