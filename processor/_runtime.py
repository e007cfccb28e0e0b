"""Process-wide tuning applied by the worker's entry points (`dsp run`, the Lambda handler).

Decoding pages allocates many short-lived containers; with CPython's default gen0 threshold
(700) the cyclic collector runs every few records and costs about a third of the decode time
with images (measured in benchmarks/, see docs/adr/0005-gc-threshold.md). A higher gen0
threshold keeps young-generation collections rare; the records are garbage after their batch
anyway, and reference counting frees almost all of them without the cyclic collector.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
