"""The composition root: settings in, a ready-to-run worker out (:mod:`processor.app.build`).

Only this package (and the CLI above it) wires concrete adapters together; everything below
takes its collaborators as arguments. Its names are imported on first use (PEP 562), so a
caller of one piece (the Lambda handler imports :mod:`processor.app.routes`) does not import
the worker, the lease store and every source with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processor.app.build import (
        OFFLINE_UNCHECKED,
        App,
        StreamRun,
        SummedStats,
        build_app,
        check_config,
        process_clients,
        stream_arn_for,
        stream_source,
        worker_settings,
    )

__all__ = [
    "OFFLINE_UNCHECKED",
    "App",
    "StreamRun",
    "SummedStats",
    "build_app",
    "check_config",
    "process_clients",
    "stream_arn_for",
    "stream_source",
    "worker_settings",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'processor.app' has no attribute {name!r}")
    value = getattr(importlib.import_module("processor.app.build"), name)
    globals()[name] = value
    return value
