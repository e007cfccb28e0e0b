"""Per-record handlers: a function of one record becomes a batch consumer.

Powertools users write ``record_handler(record)`` and get partial batch responses for free.
Here the same function, decorated with :func:`record_handler` or named by a route with
``kind = "record"``, becomes a consumer whose outcome the engine already understands
(:class:`~processor.core.consumer.BatchResult`):

* a record whose call returns is handled;
* :class:`~processor.errors.RecordError` rejects that record for good: it is dead-lettered
  at once, and the key's later records go on;
* any other exception fails it: it is retried, with the engine's backoff, bisection and dead
  letters. The key's later records are not called in this batch: they are retried after it,
  so each item's changes are handled in order. Other keys go on.

An ``async def`` handler runs the keys of a batch concurrently (at most ``concurrency`` at
once), each key's records one after another, in stream order.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from processor.core.consumer import BatchResult
from processor.core.records import StreamRecord
from processor.errors import RecordError

__all__ = ["RecordHandler", "record_handler"]

Handler = Callable[[StreamRecord], Any]


@dataclass
class _Outcome:
    failed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def fail(self, record: StreamRecord, exc: Exception) -> None:
        self.failed.append(record.event_id)
        self.reasons[record.event_id] = f"{type(exc).__name__}: {exc}"[:500]

    def result(self) -> BatchResult | None:
        if not self.failed and not self.rejected:
            return None
        return BatchResult(
            failed_event_ids=frozenset(self.failed), rejected=self.rejected, reasons=self.reasons
        )


class RecordHandler:
    """A batch consumer calling ``handler`` once per record (see the module docstring)."""

    def __init__(self, handler: Handler, *, concurrency: int = 16) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.handler = handler
        self.concurrency = concurrency
        self.is_async = inspect.iscoroutinefunction(handler)
        functools.update_wrapper(self, handler)

    def __call__(self, records: Sequence[StreamRecord]) -> BatchResult | None:
        if self.is_async:
            return asyncio.run(self._all_async(records))
        outcome = _Outcome()
        blocked: set[str] = set()
        for record in records:
            if record.key_id in blocked:
                continue  # after its key's failure: retried with it, in order
            try:
                self.handler(record)
            except RecordError as exc:
                outcome.rejected[record.event_id] = str(exc)
            except Exception as exc:  # noqa: BLE001 - any other failure is retried
                outcome.fail(record, exc)
                blocked.add(record.key_id)
        return outcome.result()

    async def _all_async(self, records: Sequence[StreamRecord]) -> BatchResult | None:
        by_key: dict[str, list[StreamRecord]] = {}
        for record in records:
            by_key.setdefault(record.key_id, []).append(record)
        outcome = _Outcome()
        slots = asyncio.Semaphore(self.concurrency)
        handler: Callable[[StreamRecord], Awaitable[Any]] = self.handler

        async def one_key(chain: list[StreamRecord]) -> None:
            async with slots:
                for record in chain:
                    try:
                        await handler(record)
                    except RecordError as exc:
                        outcome.rejected[record.event_id] = str(exc)
                    except Exception as exc:  # noqa: BLE001 - any other failure is retried
                        outcome.fail(record, exc)
                        return  # the key's later records wait for this one

        await asyncio.gather(*(one_key(chain) for chain in by_key.values()))
        return outcome.result()


@overload
def record_handler(handler: Handler, /) -> RecordHandler: ...


@overload
def record_handler(*, concurrency: int = 16) -> Callable[[Handler], RecordHandler]: ...


def record_handler(
    handler: Handler | None = None, /, *, concurrency: int = 16
) -> RecordHandler | Callable[[Handler], RecordHandler]:
    """Make a function of one record (or an ``async def``) a consumer::

        @record_handler
        def on_change(record: StreamRecord) -> None:
            ...

    ``concurrency``: for an async handler, how many keys run at once.
    """
    if handler is not None:
        return RecordHandler(handler, concurrency=concurrency)
    return lambda fn: RecordHandler(fn, concurrency=concurrency)
