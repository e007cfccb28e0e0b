"""The soak benchmark reads `dsp run`'s /metrics: a metric with labels (every stream's
figures carry ``stream`` since issue 33) is summed over its label sets, not missed."""

from __future__ import annotations

from benchmarks.soak_month import _metric

PAGE = """# HELP dsp_records_read_total Records read from the stream
# TYPE dsp_records_read_total counter
dsp_records_read_total{stream="default"} 11019.0
dsp_records_read_total{stream="orders"} 1.0
dsp_lease_scan_items 24.0
"""


def test_a_labelled_metric_is_summed_over_its_label_sets() -> None:
    assert _metric(PAGE, "dsp_records_read_total") == 11020.0


def test_an_unlabelled_metric_is_read_and_a_missing_one_is_none() -> None:
    assert _metric(PAGE, "dsp_lease_scan_items") == 24.0
    assert _metric(PAGE, "dsp_leases_owned") is None
