"""A short way for the two calls a worker makes most: GetRecords (every shard, every poll)
and the lease renewal (every lease, every ``renew_interval_s``). ADR 0030.

botocore spends about 1.5 ms of CPU on an empty GetRecords and 2.4 ms on a renewal (endpoint
rules, event hooks, request objects, the response parser); at rest that is nearly all a
worker does. :class:`FastPath` sends the same JSON request, signed by botocore's own SigV4
signer with the session's (refreshing) credentials, over a persistent ``http.client``
connection of the calling thread, and hands back the body of a ``200`` answer.

It only ever handles success. Anything else (an error status, a throttling, a connection
that fails, a body whose ``x-amz-crc32`` does not match) makes :meth:`FastPath.call` answer
``None``, and the caller makes the same call through the botocore client, whose retries,
error parsing and modeled exceptions then apply exactly as without a fast path. Both calls
it serves may be repeated: GetRecords reads, and a renewal sets the heartbeat under a
condition that the first attempt did not change.

There is no fast path (the botocore client makes every call) when ``[aws] fast_path =
false``, or when a proxy is configured (``HTTPS_PROXY`` and the like): botocore's proxy
handling is not repeated here.
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import urllib.parse
import urllib.request
import zlib
from typing import Any

import msgspec

__all__ = ["FastPath", "fast_path_for"]

_ENCODER = msgspec.json.Encoder()
#: what a kept-alive connection the server closed while it was idle raises
_GONE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class FastPath:
    """Signed JSON-protocol calls to one service's endpoint, returning a 200 answer's body.

    ``credentials``: botocore credentials (``get_frozen_credentials()``, refreshed by botocore
    as they near their expiry). Each thread keeps one persistent connection (``http.client``:
    about half the CPU of a pooled urllib3 request); one that fails is closed and the call is
    left to botocore."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        signing_name: str,
        target_prefix: str,
        json_version: str,
        credentials: Any,
        connect_timeout_s: float,
        read_timeout_s: float,
        ca_bundle: str | None = None,
    ) -> None:
        from botocore.auth import SigV4Auth  # noqa: PLC0415 - with the clients (cold start)
        from botocore.awsrequest import AWSRequest  # noqa: PLC0415

        self._url = endpoint_url.rstrip("/") + "/"
        parts = urllib.parse.urlsplit(self._url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._path = parts.path or "/"
        self._tls = ssl.create_default_context(cafile=ca_bundle) if self._https else None
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._region = region
        self._signing_name = signing_name
        self._target_prefix = target_prefix
        self._content_type = f"application/x-amz-json-{json_version}"
        self._credentials = credentials
        self._signer = SigV4Auth
        self._request = AWSRequest
        self._local = threading.local()
        self._open: set[http.client.HTTPConnection] = set()
        self.calls = 0  # answered here
        self.fallbacks = 0  # left to botocore
        self._lock = threading.Lock()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """The calling thread's connection, and whether it was opened just now."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None and connection.sock is not None:
            return connection, False
        connect_s, read_s = self._timeouts  # none yet, or closed by close()
        if self._tls is not None:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=connect_s, context=self._tls
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=connect_s)
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(read_s)
        self._local.connection = connection
        with self._lock:
            self._open.add(connection)
        return connection, True

    def _send(self, body: bytes, headers: dict[str, str]) -> http.client.HTTPResponse:
        """Send on the thread's connection. A kept-alive connection that the server closed
        while it was idle (it answers nothing) is replaced once, as urllib3 does; a fresh
        connection that fails, fails."""
        connection, fresh = self._connection()
        try:
            connection.request("POST", self._path, body=body, headers=headers)
            return connection.getresponse()
        except _GONE:
            self._drop()
            if fresh:
                raise
        connection, _ = self._connection()
        connection.request("POST", self._path, body=body, headers=headers)
        return connection.getresponse()

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()
            with self._lock:
                self._open.discard(connection)

    def close(self) -> None:
        """Close every thread's connection (a thread that calls again opens a new one)."""
        if not hasattr(self, "_open"):  # __init__ did not finish (from __del__)
            return
        with self._lock:
            connections, self._open = list(self._open), set()
        for connection in connections:
            connection.close()

    def __del__(self) -> None:
        self.close()

    def call(self, operation: str, params: dict[str, Any]) -> bytes | None:
        """The body of the ``200`` answer to ``operation`` with ``params``; ``None`` for any
        other outcome (make the call through the botocore client then)."""
        body = _ENCODER.encode(params)
        status, data, crc = 0, b"", None
        try:
            credentials = self._credentials.get_frozen_credentials()
            request = self._request(
                method="POST",
                url=self._url,
                data=body,
                headers={
                    "Content-Type": self._content_type,
                    "X-Amz-Target": f"{self._target_prefix}.{operation}",
                },
            )
            self._signer(credentials, self._signing_name, self._region).add_auth(request)
            answer = self._send(body, dict(request.headers.items()))
            status, data, crc = answer.status, answer.read(), answer.getheader("x-amz-crc32")
            if answer.will_close:
                self._drop()
        except Exception:  # noqa: BLE001 - any failure here is botocore's to make and report
            self._drop()
        ok = status == 200 and _crc_matches(crc, data)
        with self._lock:
            if ok:
                self.calls += 1
            else:
                self.fallbacks += 1
        return data if ok else None


def _crc_matches(header: str | None, data: bytes) -> bool:
    """DynamoDB's answers carry the CRC32 of their body (botocore checks it too)."""
    return header is None or not header.isdigit() or zlib.crc32(data) == int(header)


def _proxied() -> bool:
    return bool(urllib.request.getproxies())


def fast_path_for(
    client: Any,
    credentials: Any,
    *,
    connect_timeout_s: float,
    read_timeout_s: float,
) -> FastPath | None:
    """A fast path beside a botocore ``client`` of a JSON-protocol service (DynamoDB, DynamoDB
    Streams), to the same endpoint; ``None`` where there is none to have: another protocol,
    no credentials, a proxy, or a client with a proxy of its own."""
    from botocore.httpsession import get_cert_path  # noqa: PLC0415 - with the clients

    model = client.meta.service_model
    metadata = model.metadata
    config = client.meta.config
    if (
        model.protocol != "json"
        or credentials is None
        or _proxied()
        or getattr(config, "proxies", None)
        or not metadata.get("targetPrefix")
    ):
        return None
    return FastPath(
        endpoint_url=client.meta.endpoint_url,
        region=client.meta.region_name,
        signing_name=model.signing_name,
        target_prefix=metadata["targetPrefix"],
        json_version=metadata.get("jsonVersion", "1.0"),
        credentials=credentials,
        connect_timeout_s=connect_timeout_s,
        read_timeout_s=read_timeout_s,
        ca_bundle=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True),
    )
