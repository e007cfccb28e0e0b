"""The one HTTP client factory: the pooled, keep-alive client every webhook route shares.

:class:`HttpPool` is a ``urllib3.PoolManager`` that counts what the metrics report
(connections opened, requests sent) through urllib3's public extension points, the pool
classes by scheme and their ``ConnectionCls``, instead of reading the pools' internals.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

if TYPE_CHECKING:
    from processor.settings import Settings

__all__ = ["HttpPool", "make_http_pool"]


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0


class HttpPool(urllib3.PoolManager):
    """A PoolManager that knows its size and counts connections and requests."""

    def __init__(self, *, maxsize: int = 10, **kwargs: Any) -> None:
        super().__init__(maxsize=maxsize, **kwargs)
        #: connections per host: what a consumer may run in parallel against one host
        self.maxsize = maxsize
        counts = self._counts = _Counts()

        def counted(base: type[HTTPConnection]) -> type[HTTPConnection]:
            class Counted(base):  # type: ignore[valid-type,misc]
                def connect(self) -> None:
                    with counts.lock:
                        counts.connections += 1
                    super().connect()

            return Counted

        def pool(base: type[HTTPConnectionPool], connection: type[HTTPConnection]) -> type[Any]:
            class Pool(base):  # type: ignore[valid-type,misc]
                ConnectionCls = connection

                def urlopen(self, *args: Any, **kw: Any) -> Any:
                    with counts.lock:
                        counts.requests += 1
                    return super().urlopen(*args, **kw)

            return Pool

        self.pool_classes_by_scheme = {
            "http": pool(HTTPConnectionPool, counted(HTTPConnection)),
            "https": pool(HTTPSConnectionPool, counted(HTTPSConnection)),
        }

    @property
    def connections_opened(self) -> int:
        return self._counts.connections

    @property
    def requests_sent(self) -> int:
        return self._counts.requests


def make_http_pool(settings: Settings) -> HttpPool:
    """One pooled, keep-alive HTTP client shared by every webhook route of the process.

    TLS certificates are always verified (against ``http.ca_bundle`` when set).
    """
    tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
    if settings.http.ca_bundle:
        tls["ca_certs"] = settings.http.ca_bundle
    return HttpPool(
        num_pools=32,
        maxsize=settings.http.pool_size,
        **tls,
        block=True,
        timeout=urllib3.Timeout(
            connect=settings.http.connect_timeout_s, read=settings.http.read_timeout_s
        ),
        retries=False,  # retries are the consumer's tenacity policy, not urllib3's
    )
