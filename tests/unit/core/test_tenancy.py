"""Tenants: assigned before routing, counted per route, policy for records without one."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from processor.core.consumer import BatchResult, RouteStats
from processor.core.dispatch import Dispatcher
from processor.core.records import StreamRecord
from processor.core.retry import RetryPolicy
from processor.core.routing import Route
from processor.core.tenancy import Tenancy, TenantResolver
from processor.testing import make_record

from .test_dispatch import ListSink

RESOLVER = TenantResolver.from_settings("pk", r"^TENANT#(?P<tenant>[^#]+)")


def batch() -> list[StreamRecord]:
    return [
        make_record({"pk": {"S": "TENANT#acme"}, "sk": {"S": "1"}}, event_id="a1"),
        make_record({"pk": {"S": "GLOBAL#config"}, "sk": {"S": "1"}}, event_id="g1"),
        make_record({"pk": {"S": "TENANT#globex#x"}, "sk": {"S": "1"}}, event_id="b1"),
        make_record({"sk": {"S": "no-pk"}}, event_id="n1"),
    ]


class Seen:
    def __init__(self, reject: str | None = None) -> None:
        self.tenants: dict[str, str | None] = {}
        self.reject = reject

    def __call__(self, records: Sequence[StreamRecord]) -> BatchResult | None:
        self.tenants.update((r.event_id, r.tenant) for r in records)
        if self.reject:
            return BatchResult(rejected={self.reject: "nope"})
        return None


def run(missing: str, consumer: Seen) -> tuple[Dispatcher, ListSink]:
    sink = ListSink()
    dispatcher = Dispatcher(
        [Route("r", consumer)],
        sink,
        RetryPolicy(),
        stats={"r": RouteStats()},
        stop=threading.Event(),
        sleep=lambda _s: None,
        tenancy=Tenancy(RESOLVER, missing),  # type: ignore[arg-type]
    )
    dispatcher.dispatch(batch())
    return dispatcher, sink


def test_every_record_gets_its_tenant_before_the_consumer_sees_it() -> None:
    seen = Seen(reject="b1")
    dispatcher, sink = run("process", seen)
    assert seen.tenants == {"a1": "acme", "g1": None, "b1": "globex", "n1": None}
    counts = dispatcher.tenant_stats.snapshot()
    assert counts[("r", "acme", "routed")] == 1
    assert counts[("r", "-", "routed")] == 2
    assert counts[("r", "globex", "dead_lettered")] == 1
    (entry,) = sink.entries
    assert entry.tenant == "globex"
    assert entry.to_document()["tenant"] == "globex"


def test_missing_tenant_skip() -> None:
    seen = Seen()
    dispatcher, sink = run("skip", seen)
    assert set(seen.tenants) == {"a1", "b1"}
    assert sink.entries == []
    assert dispatcher.tenant_stats.get("-", "-", "skipped") == 2


def test_missing_tenant_dead_letter_names_the_reason() -> None:
    seen = Seen()
    dispatcher, sink = run("dead_letter", seen)
    assert set(seen.tenants) == {"a1", "b1"}
    assert sorted(e.record["eventID"] for e in sink.entries) == ["g1", "n1"]
    assert {e.error_type for e in sink.entries} == {"NoTenant"}
    assert "does not match [tenancy] pattern" in sink.entries[0].error_message
    assert dispatcher.tenant_stats.get("-", "-", "dead_lettered") == 2


def test_the_pattern_without_a_tenant_group_is_a_settings_error() -> None:
    from processor.settings import TenancySettings  # noqa: PLC0415

    with pytest.raises(ValueError, match=r"\(\?P<tenant>"):
        TenancySettings(pattern="^TENANT#")
    with pytest.raises(ValueError, match="process"):
        TenancySettings(missing="drop")


def test_numbers_and_missing_attributes_have_no_tenant() -> None:
    assert RESOLVER.tenant_of(make_record({"pk": {"N": "12"}}, event_id="x")) is None
    assert RESOLVER.tenant_of(make_record({"id": {"S": "TENANT#a"}}, event_id="y")) is None
