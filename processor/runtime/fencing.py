"""Self-fencing: a reader starts no batch on a lease that was not confirmed recently.

Renewals run on the worker's main thread; if they lag (a slow lease table), another replica
could soon see the lease as expired and take it. Not starting a batch then keeps two owners
from delivering the same records at once. Another replica may take a lease only a full
timeout after its last confirmation; the fence is half of it."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from processor.errors import ShutdownRequested
from processor.leases.model import Lease
from processor.runtime.steps import Steps

__all__ = ["await_confirmed_lease"]

log = structlog.get_logger()


def await_confirmed_lease(
    lease: Callable[[], Lease],
    clock: Callable[[], float],
    fence_s: float,
    stop: threading.Event,
) -> Steps[None]:
    """Wait, without delivering, until ``lease()`` was confirmed within ``fence_s``;
    ShutdownRequested once ``stop`` is set meanwhile."""
    warned = False
    while clock() - lease().heartbeat >= fence_s:
        if not warned:
            log.warning(
                "lease_not_confirmed",
                age_s=round(clock() - lease().heartbeat, 2),
                fence_s=fence_s,
            )
            warned = True
        yield 0.05
        if stop.is_set():
            raise ShutdownRequested("stop requested while waiting for the lease")
