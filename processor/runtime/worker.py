"""Lease acquisition, a reader per owned shard on a bounded pool of threads, renewal,
graceful shutdown.

The main loop (one thread) discovers shards, creates missing lease items, takes leases of
ready shards (lineage: children only after their parents finished), starts a
:class:`~processor.runtime.reader.ShardReader` per owned shard in the reader pool
(:class:`~processor.runtime.pool.StepPool`: at most ``reader_threads`` threads, whatever the
number of shards), renews leases, and notices
when every owned shard has been idle long enough (``--stop-when-idle``). On stop it tells
readers to finish their in-flight batch, waits up to the shutdown deadline, and releases the
leases it still holds so another replica can take over at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import structlog

from processor.core.dispatch import Dispatcher
from processor.errors import ProcessorError, StreamNotFoundError
from processor.leases.balancing import plan
from processor.leases.cleanup import lease_states
from processor.leases.model import Lease, LeaseStore
from processor.process import peak_rss_mb
from processor.runtime.discovery import Discovery
from processor.runtime.main_loop import run_workers
from processor.runtime.pool import StepPool, WakingEvent
from processor.runtime.rate import RateLimiter
from processor.runtime.reader import RecordWindow, ShardReader
from processor.runtime.shard_run import (
    Running,
    RunSummary,
    WorkerSettings,
    release,
    renew_all,
    restart_steps,
    snapshot,
)
from processor.runtime.snapshot import UnownedShards, WorkerSnapshot, readiness
from processor.runtime.start import live_start
from processor.runtime.steps import bound
from processor.runtime.targets import PipelineTarget, ReaderOutcome, ShardTarget
from processor.sources.base import StreamSource
from processor.sources.lineage import Shard

__all__ = ["PositionFor", "RunSummary", "Worker", "WorkerSettings"]

#: Where a shard without a checkpoint starts: (iterator type, sequence number), or None to
#: skip it (replay ranges). Without one: lineage, then ``starting_position``.
PositionFor = Callable[[Shard | None, Lease], tuple[str, str | None] | None]

log = structlog.get_logger()

#: leases renewed at once (one slow renewal must not delay the others)
RENEWAL_THREADS = 16


class Worker:
    def __init__(
        self,
        *,
        adapter: StreamSource,
        stream_arn: str,
        store: LeaseStore,
        dispatcher_for: Callable[[threading.Event], Dispatcher],
        settings: WorkerSettings,
        position_for: PositionFor | None = None,
        window: RecordWindow | None = None,
        rate: RateLimiter | None = None,
        only_shards: frozenset[str] | None = None,
        target_for: Callable[[Lease, threading.Event], ShardTarget] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        stream: str = "default",
        pool: Callable[[], StepPool] | None = None,
    ) -> None:
        #: the stream's name among the process's streams (logs, metrics, `dsp status`)
        self.stream = stream
        #: the reader pool this worker shares with other streams' workers (their owner closes
        #: it); None: its own, started with the first reader
        self._shared_pool = pool
        self._adapter = adapter
        self._stream_arn = stream_arn
        self._store = store
        self._dispatcher_for = dispatcher_for
        #: what a lease's records go to: our pipeline (default) or, say, a MultiLang child
        self._target_for = target_for or (lambda lease, stop: PipelineTarget(dispatcher_for(stop)))
        self.settings = settings
        self._position_for = position_for
        self._window = window
        self._rate = rate
        self._only_shards = only_shards
        self._clock = clock
        self._monotonic = monotonic
        self._running: dict[str, Running] = {}
        self._takeable = 0  # ready leases nobody holds, at the last scan (idle detection)
        #: ready shards left without a live owner after the last scan, and since when
        self._unowned = UnownedShards(lambda: self.settings)
        self._take_soon = False
        self._expiring = 0  # ready leases of an owner that stopped renewing (idle detection)
        self._renewals = ThreadPoolExecutor(
            max_workers=RENEWAL_THREADS, thread_name_prefix="dsp-renew"
        )
        self.last_tick = monotonic()
        self.summary = RunSummary()
        self._scanned = False  # a lease scan happened (readiness of a replica with no lease)
        self._next_discovery = self._next_take = self._next_renewal = 0.0
        self._idle_started: float | None = None
        #: sees each wait before a reader's restart (tests record the backoff)
        self._on_restart_wait: Callable[[float], None] | None = None
        self._pool: StepPool | None = None  # started with the first reader
        self._next_cleanup = 0.0  # the first discovery cleans up what an older run left
        self._scan_items = 0
        self._discovery = Discovery(
            adapter=adapter,
            stream_arn=stream_arn,
            store=store,
            settings=settings,
            summary=self.summary,
            clock=clock,
        )

    def _take_leases(self) -> None:
        leases = self._store.list_leases()
        self._scan_items = len(leases)
        scan = plan(
            leases,
            self._discovery.shards.values(),
            owner=self.settings.owner,
            now=self._clock(),
            timeout_s=self.settings.lease_timeout_s,
            renew_interval_s=self.settings.renew_interval_s,
            room=self._room(),
            excluded=self._discovery.stopped,
            only=self._only_shards,
        )
        self._scanned = True
        self._takeable, self._expiring = scan.takeable, scan.expiring
        self._discovery.lease_states = lease_states(
            leases,
            now=self._clock(),
            timeout_s=self.settings.lease_timeout_s,
            trimmed=self._discovery.lease_states.get("trimmed_unread", 0),
        )
        taken_before = self.summary.leases_taken
        steal = scan.steal
        if steal is not None and self._store.request_handoff(steal, self.settings.owner):
            self.summary.leases_stolen += 1
            log.info("lease_handoff_requested", shard_id=steal.shard_id, from_owner=steal.owner)
        finished = set(scan.finished)
        for observed in scan.take:
            if observed.shard_id in self._running:
                continue
            lease = self._store.take(observed, self.settings.owner)
            if lease is None:
                continue  # another replica was faster
            self.summary.leases_taken += 1
            log.info(
                "lease_taken",
                shard_id=lease.shard_id,
                previous_owner=observed.owner,
                lease_counter=lease.counter,
                checkpoint=lease.checkpoint,
            )
            self._start_reader(lease, finished)
        unowned = scan.takeable - (self.summary.leases_taken - taken_before)
        self._unowned.report(unowned, self._monotonic())

    def _room(self) -> int:
        """How many more leases this process may take: all it can, unless capped."""
        if self.settings.max_leases is None:
            return len(self._discovery.shards) + 1  # more than there can be to take
        return self.settings.max_leases - len(self._running)

    def _start_reader(self, lease: Lease, finished: set[str]) -> None:
        shard = self._discovery.shards.get(lease.shard_id)
        parents = shard.parent_shard_ids if shard else lease.parent_shard_ids
        position, since = live_start(lease, parents, finished, self.settings)
        window = since or self._window
        if self._position_for is not None:  # a replay: its own start and window
            window = self._window
            chosen = self._position_for(shard, lease)
            if chosen is None:  # nothing of this shard is wanted (replay range)
                done = self._store.checkpoint(lease, lease.checkpoint, finished=True)
                self._store.release(done)
                self.summary.shards_finished += 1
                self._take_soon = True  # its children may be ready now
                return
            position = chosen
        stop = WakingEvent()
        reader = ShardReader(
            adapter=self._adapter,
            stream_arn=self._stream_arn,
            lease=lease,
            initial_position=position,
            store=self._store,
            target=self._target_for(lease, stop),
            settings=replace(self.settings.reader, lease_fence_s=self.settings.lease_timeout_s / 2),
            stop=stop,
            monotonic=self._monotonic,
            clock=self._clock,
            window=window,
            rate=self._rate,
        )
        running = Running(reader=reader)
        if self._pool is None:
            shared = self._shared_pool
            self._pool = shared() if shared else StepPool(self.settings.reader_threads)
        running.task = self._pool.submit(
            bound(restart_steps(running, self.settings, self._on_restart_wait), stream=self.stream),
            name=f"reader-{self.stream}-{lease.shard_id}",
            stop=stop,
        )
        self._running[lease.shard_id] = running

    def _reap(self) -> bool:
        """Forget readers that ended; True when a shard finished (children may be ready)."""
        any_finished = False
        for shard_id, running in list(self._running.items()):
            if running.is_alive():
                continue
            del self._running[shard_id]
            outcome = self.summary.absorb(running)
            if outcome is ReaderOutcome.FINISHED:
                self.summary.shards_finished += 1
                any_finished = True
                try:
                    self._discovery.children(shard_id)
                except ProcessorError as exc:
                    log.warning("child_discovery_failed", shard_id=shard_id, error=str(exc))
            elif outcome is ReaderOutcome.LEASE_LOST:
                self.summary.leases_lost += 1
            elif outcome is ReaderOutcome.STOPPED and running.handoff:
                self.summary.leases_handed_off += 1
                self._release(running.reader.lease, handoff=True)
            elif outcome is ReaderOutcome.FAILED:
                if running.reader.failure:  # trimmed data under on_trimmed = "fail"
                    self._discovery.stopped.add(shard_id)
                self._release(running.reader.lease)
        return any_finished

    def _renew(self) -> None:
        renew_all(self._store, list(self._running.values()), self.settings.owner, self._renewals)

    def _release(self, lease: Lease, *, handoff: bool = False) -> None:
        release(self._store, lease, handoff=handoff)

    def state(self) -> WorkerSnapshot:
        """A snapshot for metrics: counters, and per owned shard its lag and last poll."""
        return snapshot(
            self.summary,
            list(self._running.values()),
            takeable=self._takeable,
            now=self._monotonic(),
            reader_threads=self._pool.size if self._pool else self.settings.reader_threads,
            pool=self._pool,
            leases=self._discovery.lease_states,
            lease_scan_items=self._scan_items,
        )

    def alive(self) -> bool:
        """The main loop ticked recently (it ticks every ``tick_s``)."""
        return self._monotonic() - self.last_tick < max(10.0, 20 * self.settings.tick_s)

    def ready(self, max_stall_s: float) -> tuple[bool, str]:
        """Leases held, and every owned shard polled successfully within ``max_stall_s``; the
        body also names ready shards left unowned for longer than a lease timeout plus a scan
        (ADR 0023: that does not make the process unready)."""
        ok, why = readiness(self.state(), scanned=self._scanned, max_stall_s=max_stall_s)
        return ok, why + self._unowned.note(self._monotonic())

    def _idle_for(self) -> float | None:
        """Seconds since the last record on any owned shard, or None while one is busy."""
        readers = [r.reader for r in self._running.values()]
        if not all(r.caught_up for r in readers):
            return None
        return self._monotonic() - max(r.last_records_at for r in readers)

    def run(self, *, stop: threading.Event, stop_when_idle: float | None = None) -> RunSummary:
        """This stream alone on the main loop (several: :class:`~processor.runtime.fleet.Fleet`)."""
        run_workers([self], stop=stop, stop_when_idle=stop_when_idle)
        return self.summary

    def now(self) -> float:
        """The worker's monotonic clock (injectable: tests never sleep for real)."""
        return self._monotonic()

    def begin(self) -> None:
        """Before the first tick: the lease table exists."""
        self._store.ensure_table()
        log.info(
            "worker_started",
            owner=self.settings.owner,
            stream=self.stream,
            stream_arn=self._stream_arn,
        )

    def tick(self, now: float) -> None:
        """One turn of the main loop (see :func:`run_workers`)."""
        self.last_tick = now
        self._tick(now)

    def _tick(self, now: float) -> None:
        """One turn of the main loop: reap ended readers, then whatever is due of discovery,
        a lease scan and renewals."""
        if self._reap():
            self._next_take = now  # children of a finished shard may be ready
        cleanup_every = self.settings.cleanup_interval_s
        cleanup = cleanup_every is not None and now >= self._next_cleanup
        if now >= self._next_discovery or cleanup:
            try:
                self._discovery.discover(cleanup=cleanup)
            except StreamNotFoundError:
                raise
            except ProcessorError as exc:
                log.warning("shard_discovery_failed", error=str(exc))
            self._next_discovery = now + self.settings.discovery_interval_s
            if cleanup_every is not None and cleanup:
                self._next_cleanup = now + cleanup_every
        if self._take_soon:
            self._take_soon = False
            self._next_take = now
        if now >= self._next_take:
            try:
                self._take_leases()
            except ProcessorError as exc:
                log.warning("lease_scan_failed", error=str(exc))
            scan_every = min(self.settings.renew_interval_s, self.settings.lease_scan_interval_s)
            self._next_take = now + scan_every
        if now >= self._next_renewal:
            self._renew()
            self._next_renewal = now + self.settings.renew_interval_s

    def idle(self, now: float) -> float | None:
        """How long nothing was there to read, or None while something is (or soon is)."""
        if self._takeable or self._take_soon or self._expiring:
            self._idle_started = None
            return None
        if self._running:
            self._idle_started = None
            return self._idle_for()
        # nothing to read (yet): idle since we first saw that
        self._idle_started = self._idle_started or now
        return now - self._idle_started

    def stop_readers(self) -> None:
        """Shutdown, first step: every reader finishes its in-flight batch and checkpoints."""
        for running in self._running.values():
            running.reader.stop.set()

    def draining(self) -> list[Running]:
        """The readers still running (shutdown waits for them, renewing their leases)."""
        return [r for r in self._running.values() if r.is_alive()]

    def renew_due(self, now: float) -> float:
        """Renew the leases if due; when the next renewal is due."""
        if now >= self._next_renewal:
            self._renew()
            self._next_renewal = now + self.settings.renew_interval_s
        return self._next_renewal

    def finish(self) -> None:
        """Shutdown, last step: release the leases of readers that stopped, log the end."""
        for shard_id, running in self._running.items():
            if running.is_alive():
                log.error(
                    "reader_did_not_stop",
                    shard_id=shard_id,
                    stream=self.stream,
                    deadline_s=self.settings.shutdown_deadline_s,
                )
                continue
            if running.outcome is ReaderOutcome.STOPPED:
                self._release(running.reader.lease)
        self._reap()
        self._renewals.shutdown(wait=False)
        if self._pool is not None and self._shared_pool is None:
            self._pool.close()
        log.info(
            "worker_stopped",
            stream=self.stream,
            records_read=self.summary.records_read,
            shards_finished=self.summary.shards_finished,
            leases_lost=self.summary.leases_lost,
            peak_rss_mb=peak_rss_mb(),
        )
