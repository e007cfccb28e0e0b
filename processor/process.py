"""The process: tuning applied by the worker's entry points (`dsp run`, the Lambda handler),
and its peak memory for the run's last log line.

Decoding pages allocates many short-lived containers; with CPython's default gen0 threshold
(700) the cyclic collector runs every few records and costs about a third of the decode time
with images (measured in benchmarks/, see docs/adr/0005-gc-threshold.md). A higher gen0
threshold keeps young-generation collections rare; the records are garbage after their batch
anyway, and reference counting frees almost all of them without the cyclic collector.
"""

from __future__ import annotations

import gc
import resource

__all__ = ["GC_THRESHOLDS", "peak_rss_mb", "tune_gc"]

GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ru_maxrss survives exec (it would report
    the parent's peak if that was larger), so VmHWM of this address space is read first."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
