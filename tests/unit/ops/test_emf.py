"""CloudWatch Embedded Metric Format lines, checked against aws-embedded-metrics (AWS's own EMF
library): each line we write is rebuilt through its validator and serializer and must come
out the same."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
from aws_embedded_metrics.logger.metrics_context import MetricsContext
from aws_embedded_metrics.serializers.log_serializer import LogSerializer
from aws_embedded_metrics.unit import Unit

from processor.core.consumer import RouteStats
from processor.ops.emf import EMF_METRICS, EmfWriter
from processor.ops.metrics import Metrics


class FakeWorker:
    def __init__(self) -> None:
        self.lags = [12.5, 240.0, 3.0]
        self.retries = {"throttling": 2}

    def state(self) -> dict[str, Any]:
        return {
            "records_read": 1000,
            "leases_taken": 3,
            "leases_lost": 0,
            "leases_handed_off": 0,
            "leases_stolen": 0,
            "stream_retries": dict(self.retries),
            "reader_failures": 0,
            "shards_unowned": 1,
            "trimmed_skips": 0,
            "reader_threads": 32,
            "readers_busy": 1,
            "readers_queued": 0,
            "leases": {},
            "lease_scan_items": 0,
            "leases_deleted": {},
            "shards": [{"shard_id": f"s{i}", "lag_s": lag} for i, lag in enumerate(self.lags)],
        }


def engine() -> tuple[Metrics, dict[str, RouteStats], FakeWorker]:
    stats = {"notify": RouteStats(), "mirror": RouteStats()}
    for name, amount in (("delivered", 40), ("dead_lettered", 2), ("retry:http_5xx", 5)):
        stats["notify"].add(name, amount)
    stats["notify"].add("circuit_opened")
    stats["notify"].add("posted", 40)  # a consumer event that is not exported
    stats["mirror"].add("delivered", 42)
    metrics = Metrics(stats)
    metrics.worker = FakeWorker()
    metrics.observe_call("notify", 0.01)  # the latency histogram is not exported
    return metrics, stats, metrics.worker


def writer(metrics: Metrics, out: io.StringIO | None = None) -> EmfWriter:
    return EmfWriter(
        metrics.registry,
        namespace="dsp",
        application="orders-fanout",
        out=out,
        clock=lambda: 1700000000.5,
    )


def reference(document: dict[str, Any]) -> dict[str, Any]:
    """The same document built by aws-embedded-metrics: its validator checks names, units,
    values and dimensions as put_metric / set_dimensions run; LogSerializer lays it out."""
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    context = MetricsContext.empty()
    context.namespace = directive["Namespace"]
    context.set_dimensions(
        [{key: document[key] for key in dimension_set} for dimension_set in directive["Dimensions"]]
    )
    for metric in directive["Metrics"]:
        context.put_metric(metric["Name"], document[metric["Name"]], Unit(metric["Unit"]).value)
    context.meta["Timestamp"] = document["_aws"]["Timestamp"]
    (line,) = LogSerializer.serialize(context)
    return dict(json.loads(line))


def by_dimensions(
    documents: list[dict[str, Any]],
) -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    keyed = {}
    for doc in documents:
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        keys = directive["Dimensions"][0]
        keyed[tuple((k, doc[k]) for k in keys)] = doc
    return keyed


def test_every_line_is_what_aws_embedded_metrics_writes_for_the_same_figures() -> None:
    """Each line parses back to a document that aws-embedded-metrics validates and serializes
    identically: the _aws block, the namespace, units, dimension sets and values."""
    metrics, _, _ = engine()
    out = io.StringIO()
    assert writer(metrics, out).flush() > 0
    lines = out.getvalue().splitlines()
    for line in lines:
        document = json.loads(line)
        assert document == reference(document)
        assert document["_aws"]["Timestamp"] == 1700000000500
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert all(len(d) <= 30 for d in directive["Dimensions"])
        assert len(directive["Metrics"]) <= 100
        assert len(line.encode()) < 256 * 1024


def test_figures_follow_the_prometheus_names_with_labels_as_dimensions() -> None:
    """Iterator age is the max over owned shards, records carry route and outcome (and roll up
    by outcome), retries carry their cause; histograms and other events are not exported."""
    metrics, _, _ = engine()
    docs = by_dimensions(writer(metrics).documents())
    app = ("application", "orders-fanout")
    process = docs[(app,)]
    assert process["dsp_iterator_age_seconds"] == 240.0
    assert process["dsp_leases_owned"] == 3
    assert process["dsp_shards_unowned"] == 1
    assert process["dsp_records_read_total"] == 1000
    (directive,) = process["_aws"]["CloudWatchMetrics"]
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units["dsp_iterator_age_seconds"] == "Seconds"
    dead = docs[(app, ("route", "notify"), ("outcome", "dead_lettered"))]
    assert dead["dsp_records_total"] == 2
    assert dead["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["application", "route", "outcome"],
        ["application", "outcome"],
    ]
    assert docs[(app, ("route", "mirror"), ("outcome", "delivered"))]["dsp_records_total"] == 42
    assert docs[(app, ("route", "notify"), ("cause", "http_5xx"))]["dsp_retries_total"] == 5
    assert docs[(app, ("cause", "throttling"))]["dsp_stream_retries_total"] == 2
    opened = docs[(app, ("route", "notify"), ("event", "circuit_opened"))]
    assert opened["dsp_consumer_events_total"] == 1
    names = {k for doc in docs.values() for k in doc if k.startswith("dsp_")}
    assert names == set(EMF_METRICS)


def test_counters_are_written_as_their_gain_since_the_last_line() -> None:
    """CloudWatch sums a period's values, so counters go out as deltas; gauges as they are."""
    metrics, stats, worker = engine()
    emf = writer(metrics)
    emf.documents()
    stats["notify"].add("delivered", 7)
    worker.lags = []  # every shard handed off: 0 behind, not a missing datapoint
    docs = by_dimensions(emf.documents())
    app = ("application", "orders-fanout")
    assert docs[(app, ("route", "notify"), ("outcome", "delivered"))]["dsp_records_total"] == 7
    assert docs[(app, ("route", "mirror"), ("outcome", "delivered"))]["dsp_records_total"] == 0
    assert docs[(app,)]["dsp_iterator_age_seconds"] == 0
    assert docs[(app,)]["dsp_leases_owned"] == 0


def test_the_writer_flushes_on_its_interval_and_once_more_at_stop() -> None:
    """run() writes every interval until stopped, then the last gains."""
    metrics, _, _ = engine()
    out = io.StringIO()
    stop = threading.Event()
    flushes: list[int] = []

    class Counting(EmfWriter):
        def flush(self) -> int:
            flushes.append(1)
            if len(flushes) == 2:
                stop.set()
            return super().flush()

    Counting(metrics.registry, namespace="ns", application="a", out=out).run(stop, 0.001)
    assert len(flushes) == 3  # two on the interval (the second sets stop), one at stop
    assert all(
        json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ns"
        for line in out.getvalue().splitlines()
    )


@pytest.mark.parametrize("unit", sorted({e.unit for e in EMF_METRICS.values()}))
def test_units_are_cloudwatch_units(unit: str) -> None:
    """Every unit used is one CloudWatch accepts (aws-embedded-metrics' Unit)."""
    assert Unit(unit).value == unit


class FakeFleet:
    """Two streams' workers (several streams per worker): ``states()`` per stream."""

    def __init__(self) -> None:
        self.workers = {"orders": FakeWorker(), "payments": FakeWorker()}
        self.workers["payments"].lags = [600.0]

    def states(self) -> dict[str, Any]:
        return {name: worker.state() for name, worker in self.workers.items()}


def test_several_streams_add_up_in_one_process_document() -> None:
    """The stream label is not a dimension: counters and gauges are the sum over the streams,
    iterator age the max over every stream's shards (before, the last stream's won)."""
    orders, payments = RouteStats(), RouteStats()
    orders.add("delivered", 40)
    payments.add("delivered", 2)
    metrics = Metrics({})
    metrics.streams = {"orders": {"hook": orders}, "payments": {"hook": payments}}
    metrics.worker = FakeFleet()
    docs = by_dimensions(writer(metrics).documents())
    app = ("application", "orders-fanout")
    process = docs[(app,)]
    assert process["dsp_records_read_total"] == 2000
    assert process["dsp_leases_owned"] == 4
    assert process["dsp_iterator_age_seconds"] == 600.0
    assert docs[(app, ("route", "hook"), ("outcome", "delivered"))]["dsp_records_total"] == 42
