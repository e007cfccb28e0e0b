"""One owned shard driving one MultiLang child: the daemon's side of the protocol.

The reader reads, batches and keeps the lease; this processor hands each batch to the child
(``processRecords``) and waits for its ``status``, answering every ``checkpoint`` request
meanwhile: validated as the Java checkpointer does, written to the lease (conditionally on
ownership), and answered with ``error`` null or the Java exception's simple name. At the
end of the shard it sends ``shardEnded`` and the shard counts as finished only once the
child checkpointed SHARD_END, so children shards wait for it. A run that ends (SIGTERM, a
hand-off, a lost lease, a failure) tells the child what happened and stops it; the worker
restarts a failed run, with a fresh child, after its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.errors import LeaseLostError, ProcessorError, ProtocolError, TransientError
from processor.kclpy_daemon.child import Child, ChildDied, ChildFactory, ChildTimedOut
from processor.kclpy_daemon.protocol import (
    SHARD_END,
    CheckpointRange,
    CheckpointRequest,
    checkpoint_reply,
    initialize,
    lease_lost,
    process_records,
    shard_ended,
    shutdown_requested,
)
from processor.runtime.targets import ReaderOutcome, ShardContext
from processor.settings import MultiLangSettings

__all__ = ["ChildTarget", "ProtocolError"]

log = structlog.get_logger()


def _spawn(command: Sequence[str], shard_id: str, cwd: str | None) -> Child:
    return Child(command, shard_id=shard_id, cwd=cwd)


class ChildTarget:
    """A :class:`~processor.runtime.targets.ShardTarget` feeding a child process."""

    def __init__(
        self,
        options: MultiLangSettings,
        *,
        malformed: Dispatcher,
        spawn: ChildFactory | None = None,
    ) -> None:
        self._options = options
        self._command = options.executable.split()  # KCL splits on spaces, no shell
        self._malformed = malformed
        self._spawn = spawn or (lambda command, shard: _spawn(command, shard, options.cwd))
        self.wants_empty_batches = options.call_process_records_even_for_empty
        self._child: Child | None = None
        self._range = CheckpointRange(None)
        self._finished = False

    # -- ShardTarget --------------------------------------------------------------------------

    def start(self, reader: ShardContext) -> None:
        self._range = CheckpointRange(reader.last_handled)
        self._finished = False
        self._child = self._spawn(self._command, reader.shard_id)
        position = reader.last_handled or reader.initial_position
        self._call(reader, initialize(reader.shard_id, position), checkpointer=False)

    def process(self, reader: ShardContext, batch: list[StreamRecord]) -> None:
        for record in batch:
            self._range.delivered(record.sequence_number)
        behind = int(reader.lag_s * 1000)
        self._call(reader, process_records(batch, behind), checkpointer=True)

    def shard_ended(self, reader: ShardContext) -> bool:
        self._range.ended = True
        self._call(reader, shard_ended(), checkpointer=True)
        if not self._finished:
            log.error("multilang_shard_end_not_checkpointed", shard_id=reader.shard_id)
        return self._finished

    def reject_malformed(self, items: Sequence[tuple[object, Exception]], shard_id: str) -> None:
        self._malformed.reject_malformed(items, shard_id)

    def finish(self, reader: ShardContext, outcome: ReaderOutcome) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        self._child = child
        try:
            if outcome is ReaderOutcome.STOPPED and not reader.lease_lost:
                # SIGTERM or a hand-off: the child may checkpoint, within the grace period
                if self._options.shutdown_grace_s > 0:
                    self._call(
                        reader,
                        shutdown_requested(),
                        checkpointer=True,
                        timeout_s=self._options.shutdown_grace_s,
                    )
                self._call(reader, lease_lost(), checkpointer=False)
            elif outcome is ReaderOutcome.LEASE_LOST or (
                outcome is ReaderOutcome.STOPPED and reader.lease_lost
            ):
                self._call(reader, lease_lost(), checkpointer=False)
            elif outcome is ReaderOutcome.FAILED:
                child.kill()
                return
            child.close(grace_s=max(self._options.shutdown_grace_s, 2.0))
        except (ChildDied, ChildTimedOut, ProtocolError) as exc:
            log.warning("multilang_child_stop_failed", shard_id=reader.shard_id, error=str(exc))
            child.kill()
        finally:
            self._child = None

    # -- the conversation ------------------------------------------------------------------------

    def _call(
        self,
        reader: ShardContext,
        message: dict[str, Any],
        *,
        checkpointer: bool,
        timeout_s: float | None = None,
    ) -> None:
        """Send ``message``; answer checkpoints until the child's status for it arrives."""
        child = self._child
        assert child is not None
        limit = timeout_s if timeout_s is not None else self._options.timeout_s
        action = message["action"]
        child.send(message)
        while True:
            try:
                reply = child.receive(limit)
            except ChildTimedOut:
                log.error(  # noqa: TRY400 - the exception goes on; its message says it all
                    "multilang_child_timed_out", shard_id=reader.shard_id, action=action
                )
                child.kill()
                raise
            kind = reply.get("action")
            if kind == "checkpoint":
                self._checkpoint(reader, child, reply, allowed=checkpointer)
            elif kind == "status":
                if reply.get("responseFor") != action:
                    raise ProtocolError(
                        f"status for {reply.get('responseFor')!r} while waiting for {action!r}"
                    )
                return
            else:
                raise ProtocolError(f"unexpected {kind!r} message while waiting for {action!r}")

    def _checkpoint(
        self, reader: ShardContext, child: Child, request: dict[str, Any], *, allowed: bool
    ) -> None:
        error = self._write_checkpoint(reader, request) if allowed else "InvalidStateException"
        log.info(
            "multilang_checkpoint",
            shard_id=reader.shard_id,
            sequence_number=request.get("sequenceNumber"),
            error=error,
        )
        child.send(checkpoint_reply(request, error))

    def _write_checkpoint(self, reader: ShardContext, request: dict[str, Any]) -> str | None:
        sequence = request.get("sequenceNumber")
        sub = request.get("subSequenceNumber")
        try:
            target = self._range.resolve(
                CheckpointRequest(
                    None if sequence is None else str(sequence),
                    None if sub is None else int(sub),
                )
            )
        except (ValueError, TypeError):
            return "IllegalArgumentException"
        try:
            if target == SHARD_END:
                reader.commit(self._range.largest, finished=True)
                self._finished = True
            elif target is not None:
                reader.commit(target)
                self._range.checkpointed(target)
        except LeaseLostError:
            reader.lease_lost = True
            reader.stop.set()  # the run ends after this batch; the child hears leaseLost
            return "ShutdownException"
        except TransientError:
            return "ThrottlingException"
        except ProcessorError:
            return "KinesisClientLibDependencyException"
        return None
