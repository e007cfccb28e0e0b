"""The contract between the engine and consumers.

A consumer is a callable taking the records of one batch (already filtered for its route, in
stream order) and returning ``None`` when all were handled, or a :class:`BatchResult` naming
those that failed. Raising :class:`~processor.errors.RecordError` means "these records can
never succeed" (dead-letter them); any other exception means "try again".

Built-in consumers are registered as ``dsp.consumers`` entry points: each names a factory
``build(options, context) -> Consumer``. A route may instead name any
``package.module:callable``, which is called with the records directly.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from processor.core.records import StreamRecord

__all__ = [
    "BatchResult",
    "Consumer",
    "ConsumerContext",
    "ConsumerFactory",
    "RouteStats",
    "StreamInfo",
    "aws_connections",
    "builtin_consumers",
    "declare_aws_connections",
    "load_callable",
]

ENTRY_POINT_GROUP = "dsp.consumers"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-record outcomes of one consumer call.

    ``failed_event_ids``: records not handled, to be retried (from the first of them on, in
    stream order). ``rejected``: records that can never succeed (event_id to reason), to be
    dead-lettered at once without retries. Records named in neither were handled.
    ``reasons``: optional, why a failed record failed (event_id to text); when its retries
    run out, its dead letter carries its last reason.
    """

    failed_event_ids: frozenset[str] = frozenset()
    rejected: Mapping[str, str] = field(default_factory=dict)
    #: optional: retry the failed records no sooner than this (e.g. a receiver's circuit
    #: breaker reopens then); the engine waits at least this long, capped by its max delay
    retry_after: float | None = None
    reasons: Mapping[str, str] = field(default_factory=dict)
    #: optional: failed records that were *held*, not attempted, because their destination is
    #: known to be unavailable (a circuit breaker is open). When every record to retry is
    #: held, the engine waits the full ``retry_after`` (not capped by its max delay) and the
    #: hold does not spend a retry: only ``max_record_age_s`` (or the stream's retention)
    #: bounds it. See docs/adr/0015-holds-are-not-attempts.md.
    held: frozenset[str] = frozenset()

    @classmethod
    def failed(
        cls,
        records: Sequence[StreamRecord],
        *,
        rejected: Mapping[str, str] | None = None,
        reasons: Mapping[str, str] | None = None,
    ) -> BatchResult:
        return cls(
            frozenset(r.event_id for r in records),
            dict(rejected or {}),
            reasons=dict(reasons or {}),
        )


class Consumer(Protocol):
    def __call__(self, records: Sequence[StreamRecord], /) -> BatchResult | None: ...


class RouteStats:
    """Thread-safe counters a consumer and the engine keep per route (shown by the demo)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()  # counts, and capacity units (floats)

    def add(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._counts[name] += amount  # type: ignore[assignment]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What consumers may need to know about the source stream."""

    stream_arn: str
    table_name: str
    view_type: str  # KEYS_ONLY | NEW_IMAGE | OLD_IMAGE | NEW_AND_OLD_IMAGES
    key_attributes: tuple[str, ...]

    @property
    def has_new_images(self) -> bool:
        return self.view_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")

    @property
    def has_old_images(self) -> bool:
        return self.view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")


@dataclass(slots=True)
class ConsumerContext:
    """Shared resources handed to consumer factories. Consumers never build their own."""

    route: str
    config_key: str  # e.g. "routes.0": prefix for configuration error keys
    stream: StreamInfo
    clients: Any  # processor.aws.AwsClients (typed loosely to keep consumers decoupled)
    http: Any  # the shared pooled urllib3.PoolManager
    memory_caches: dict[str, Any]
    sleep: Callable[[float], None]
    stop: threading.Event
    stats: RouteStats = field(default_factory=RouteStats)
    #: where untrusted (tenant-supplied) URLs may go: a processor.webhooks.egress.EgressPolicy
    egress: Any = None
    #: monotonic clock for cool-downs and deadlines (injectable, as ``sleep`` is)
    clock: Callable[[], float] = time.monotonic
    #: ``dsp check-config --offline``: ``stream`` is a stand-in (its key schema and view type
    #: unknown) and ``clients`` is None; a factory validates everything else exactly as for a
    #: run and skips only the checks that need AWS
    offline: bool = False


class ConsumerFactory(Protocol):
    def __call__(self, options: Mapping[str, Any], context: ConsumerContext, /) -> Consumer: ...


def declare_aws_connections(
    factory: Callable[..., Any], count: Callable[[Mapping[str, Any]], int]
) -> None:
    """Say how many connections of the shared AWS clients a consumer built by ``factory``
    with these options may hold at once; the process sizes botocore's pool from it."""
    setattr(factory, _AWS_CONNECTIONS, count)


def aws_connections(factory: Callable[..., Any], options: Mapping[str, Any]) -> int:
    """What ``factory`` declared for these options (0 if it declared nothing)."""
    count = getattr(factory, _AWS_CONNECTIONS, None)
    return int(count(options)) if callable(count) else 0


_AWS_CONNECTIONS = "dsp_aws_connections"


def builtin_consumers() -> dict[str, str]:
    """Registered consumer names and the factory each points at."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_callable(spec: str) -> Callable[..., Any]:
    """Import ``package.module:attribute``; raises ValueError with the reason."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError("expected 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from exc
    if not callable(target):
        raise ValueError(f"{spec!r} is not callable")  # noqa: TRY004 - callers catch ValueError
    return target  # type: ignore[no-any-return]
