"""The runtime's settings: a shard reader's (:class:`ReaderSettings`) and a stream's worker's
(:class:`WorkerSettings`), built from the configuration by ``processor.app.streams``; and
the shape of a replay's record window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from processor.core.records import StreamRecord

__all__ = ["ReaderSettings", "RecordWindow", "WorkerSettings"]


#: Replay's range: keeps the records of a page that are in range, and says whether the end
#: of the range was passed (the shard is then done).
RecordWindow = Callable[[list[StreamRecord]], tuple[list[StreamRecord], bool]]


@dataclass(frozen=True, slots=True)
class ReaderSettings:
    get_records_limit: int = 1000
    max_records: int = 100
    max_window_s: float = 0.0
    on_trimmed: str = "fail"  # "fail" | "skip"
    #: Start no batch unless the lease was confirmed this recently (half the lease timeout):
    #: another replica may take a lease only a full timeout after its last confirmation.
    lease_fence_s: float = 15.0
    poll_interval_min_s: float = 0.25
    poll_interval_max_s: float = 2.0
    #: once a shard has had no records for ``idle_after_s``, its polls may space out to this
    #: (None: ``poll_interval_max_s`` always). Idle polls are most of the cost at rest.
    idle_poll_interval_s: float | None = 10.0
    idle_after_s: float = 60.0
    #: hold each record this long to restore each key's creation order and drop duplicates
    #: (Kinesis Data Streams for DynamoDB); 0: off
    reorder_window_s: float = 0.0
    #: the least time between two GetRecords calls on the shard, even while catching up
    #: (Kinesis: 0.2 s, its 5 calls per second per shard); 0: the next page at once
    min_read_interval_s: float = 0.0


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    owner: str
    starting_position: str = "TRIM_HORIZON"
    #: with starting_position AT_TIMESTAMP: the time (epoch seconds); ``native``: the source
    #: has an AT_TIMESTAMP iterator (Kinesis), else records before it are skipped (ADR 0025)
    starting_timestamp: float | None = None
    native_at_timestamp: bool = False
    timestamp_granularity_s: float = 1.0
    lease_timeout_s: float = 30.0
    renew_interval_s: float = 10.0
    #: the lease table is scanned this often (or every renewal, if that is more often)
    lease_scan_interval_s: float = 2.0
    discovery_interval_s: float = 30.0
    #: leases this process may hold; None: no cap (every shard it can take)
    max_leases: int | None = None
    #: a cleanup pass this often (ADR 0024); None: leases are never deleted
    cleanup_interval_s: float | None = 60.0
    #: at most this many deletes per cleanup pass (the rest wait for the next)
    cleanup_max_deletes: int = 100
    shutdown_deadline_s: float = 30.0
    tick_s: float = 0.2
    #: a reader that fails (AccessDenied, an unexpected error) is restarted, keeping its lease,
    #: after a full-jitter exponential backoff from this base up to the cap
    reader_restart_base_s: float = 1.0
    reader_restart_max_s: float = 60.0
    #: the most threads reading shards at once, however many shards are owned
    reader_threads: int = 32
    reader: ReaderSettings = field(default_factory=ReaderSettings)
