"""CloudWatch metrics without an agent: Embedded Metric Format (EMF) lines on stdout.

ECS's ``awslogs`` driver and Lambda hand stdout to CloudWatch Logs, which turns each line that
carries an ``_aws`` block into metrics. The figures are the Prometheus ones, read from the
same registry, with the same names and with labels as dimensions, plus ``application`` (the
lease namespace, ``checkpoints.application``) on every one. The ``stream`` label of several
streams per worker is not a dimension: counters and gauges are summed over the streams,
``dsp_iterator_age_seconds`` is the max over every stream's shards:

=============================  =========  ==================================================
metric                         unit       dimension sets
=============================  =========  ==================================================
dsp_iterator_age_seconds       Seconds    [application]: the max over this process's shards
dsp_leases_owned               Count      [application]
dsp_shards_unowned             Count      [application]
dsp_records_read_total         Count      [application]
dsp_reader_failures_total      Count      [application]
dsp_records_total              Count      [application, route, outcome], [application, outcome]
dsp_retries_total              Count      [application, route, cause]
dsp_stream_retries_total       Count      [application, cause]
dsp_consumer_events_total      Count      [application, route, event]: event circuit_opened
                                          only (a webhook host's breaker opened)
=============================  =========  ==================================================

Counters are written as what they gained since the last line (CloudWatch sums them per
period); gauges as they are. Dead letters are ``dsp_records_total`` with ``outcome =
dead_lettered``, so ``[application, outcome]`` alarms on them across routes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TextIO

from prometheus_client import CollectorRegistry

__all__ = ["EMF_METRICS", "EmfWriter"]

Kind = Literal["delta", "gauge", "max"]


@dataclass(frozen=True, slots=True)
class _Exported:
    kind: Kind  # delta: a counter's gain; gauge: as is; max: the max over the dropped labels
    unit: Literal["Count", "Seconds"]
    labels: tuple[str, ...] = ()  # the Prometheus labels kept as dimensions
    rollups: tuple[tuple[str, ...], ...] = ()  # further dimension sets (subsets of labels)
    only: tuple[tuple[str, str], ...] = ()  # label values a sample must have to be exported


#: what is exported, by Prometheus sample name
EMF_METRICS: dict[str, _Exported] = {
    "dsp_iterator_age_seconds": _Exported("max", "Seconds"),
    "dsp_leases_owned": _Exported("gauge", "Count"),
    "dsp_shards_unowned": _Exported("gauge", "Count"),
    "dsp_records_read_total": _Exported("delta", "Count"),
    "dsp_reader_failures_total": _Exported("delta", "Count"),
    "dsp_records_total": _Exported("delta", "Count", ("route", "outcome"), (("outcome",),)),
    "dsp_retries_total": _Exported("delta", "Count", ("route", "cause")),
    "dsp_stream_retries_total": _Exported("delta", "Count", ("cause",)),
    "dsp_consumer_events_total": _Exported(
        "delta", "Count", ("route", "event"), only=(("event", "circuit_opened"),)
    ),
}

#: one series: its metric name and its label values, in the order of _Exported.labels
_Series = tuple[str, tuple[str, ...]]


class EmfWriter:
    """Writes the registry's figures as EMF documents, one per set of dimension values."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        namespace: str,
        application: str,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._namespace = namespace
        self._application = application
        self._out = out
        self._clock = clock
        self._last: dict[_Series, float] = {}  # counters' values at the last flush
        self._lock = threading.Lock()

    def _values(self) -> dict[_Series, float]:
        values: dict[_Series, float] = {}
        for family in self._registry.collect():
            for sample in family.samples:
                exported = EMF_METRICS.get(sample.name)
                if exported is None or any(sample.labels.get(k) != v for k, v in exported.only):
                    continue
                key = (sample.name, tuple(sample.labels.get(k, "") for k in exported.labels))
                if exported.kind == "max":
                    values[key] = max(values.get(key, 0.0), float(sample.value))
                else:  # the labels left out (stream) are summed over
                    values[key] = values.get(key, 0.0) + float(sample.value)
        for name, exported in EMF_METRICS.items():
            if exported.kind == "max" and not exported.labels:
                values.setdefault((name, ()), 0.0)  # no shard owned: 0 behind, not missing
        return values

    def documents(self) -> list[dict[str, object]]:
        """The documents for now: counters' gains since the last call, gauges as they are."""
        with self._lock:
            values = self._values()
            groups: dict[tuple[tuple[str, ...], tuple[str, ...]], dict[str, float]] = {}
            for (name, label_values), value in values.items():
                exported = EMF_METRICS[name]
                figure = value
                if exported.kind == "delta":
                    figure = max(0.0, value - self._last.get((name, label_values), 0.0))
                    self._last[(name, label_values)] = value
                groups.setdefault((exported.labels, label_values), {})[name] = figure
        timestamp = int(self._clock() * 1000)
        return [
            self._document(labels, label_values, figures, timestamp)
            for (labels, label_values), figures in sorted(groups.items())
        ]

    def _document(
        self,
        labels: tuple[str, ...],
        label_values: tuple[str, ...],
        figures: dict[str, float],
        timestamp: int,
    ) -> dict[str, object]:
        rollups = {r for name in figures for r in EMF_METRICS[name].rollups}
        dimension_sets = [["application", *labels]] + [
            ["application", *rollup] for rollup in sorted(rollups)
        ]
        metrics = [{"Name": name, "Unit": EMF_METRICS[name].unit} for name in sorted(figures)]
        return {
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self._namespace,
                        "Dimensions": dimension_sets,
                        "Metrics": metrics,
                    }
                ],
            },
            "application": self._application,
            **dict(zip(labels, label_values, strict=True)),
            **{name: _number(value) for name, value in sorted(figures.items())},
        }

    def lines(self) -> Iterator[str]:
        for document in self.documents():
            yield json.dumps(document, separators=(",", ":"), ensure_ascii=False)

    def flush(self) -> int:
        """Write one line per document to stdout (or ``out``); returns how many."""
        out = self._out or sys.stdout
        written = list(self.lines())
        out.write("".join(line + "\n" for line in written))
        out.flush()
        return len(written)

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Flush every ``interval_s`` until ``stop`` is set, then once more (the last gains)."""
        while not stop.wait(interval_s):
            self.flush()
        self.flush()

    def start(self, stop: threading.Event, interval_s: float) -> threading.Thread:
        thread = threading.Thread(
            target=self.run, args=(stop, interval_s), daemon=True, name="dsp-emf"
        )
        thread.start()
        return thread


def _number(value: float) -> float | int:
    return int(value) if value.is_integer() else value
