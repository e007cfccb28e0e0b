"""A webhook receiver for tests: a real HTTP(S) server on loopback that records requests and
answers from a script (status, delay, headers), and a self-signed certificate to serve TLS."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["ReceivedRequest", "WebhookReceiver", "self_signed_certificate"]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic()
    received_wall: float = 0.0  # time.time(), for lags measured against other processes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Script:
    """Statuses to answer, in order; the last one repeats. Headers go with every answer."""

    statuses: list[int] = field(default_factory=lambda: [200])
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class _QuietServer(ThreadingHTTPServer):
    """A client that dies mid-request (tests SIGKILL senders) is not an error here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


class _QuietServer6(_QuietServer):
    address_family = socket.AF_INET6


class WebhookReceiver:
    """A real HTTP/1.1 keep-alive server on loopback that records what it receives.

    It listens on 127.0.0.1 unless ``host`` names another loopback address (``127.0.0.2``,
    ``::1``); ``port`` picks the port (0: any free one).

    ``script(path, [503, 200])`` makes requests to ``path`` answer 503 once, then 200.
    Requests answered with a non-2xx status are recorded in ``attempts`` only; successful
    ones in ``requests`` too.
    """

    def __init__(
        self, *, tls: tuple[str, str] | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """``tls=(certfile, keyfile)`` serves HTTPS (see :func:`self_signed_certificate`)."""
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("test receivers listen on loopback addresses only")
        self._lock = threading.Lock()
        self.requests: list[ReceivedRequest] = []
        self.attempts: list[tuple[ReceivedRequest, int]] = []
        self.connections = 0
        self._scripts: dict[str, _Script] = {}
        self._counts: dict[str, int] = {}
        #: while set, every request is answered with this status (an outage)
        self.down_status: int | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in one segment: otherwise Nagle + delayed ACK add
            # ~40 ms to every keep-alive response and every benchmark measures that.
            disable_nagle_algorithm = True
            wbufsize = 64 * 1024

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing was delivered
                    self.close_connection = True
                    return
                request = ReceivedRequest(
                    "POST",
                    self.path,
                    dict(self.headers.items()),
                    body,
                    time.monotonic(),
                    time.time(),
                )
                status, headers, delay = receiver._answer(self.path)
                if delay:
                    time.sleep(delay)
                with receiver._lock:
                    receiver.attempts.append((request, status))
                    if 200 <= status < 300:
                        receiver.requests.append(request)
                payload = b'{"ok": true}' if status < 300 else b'{"error": "scripted"}'
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server_class = _QuietServer6 if ":" in host else _QuietServer
        self._server = server_class((host, port), Handler)
        self._server.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        # poll every 50 ms: shutdown() returns at once instead of waiting out 0.5 s
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def _answer(self, path: str) -> tuple[int, dict[str, str], float]:
        with self._lock:
            if self.down_status is not None:
                return self.down_status, {}, 0.0
            script = self._scripts.get(path) or _Script()
            n = self._counts.get(path, 0)
            self._counts[path] = n + 1
            status = script.statuses[min(n, len(script.statuses) - 1)]
            return status, dict(script.headers), script.delay_s

    def script(
        self,
        path: str,
        statuses: Iterable[int],
        *,
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        with self._lock:
            self._scripts[path] = _Script(list(statuses), dict(headers or {}), delay_s)
            self._counts[path] = 0

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        address, port = self._server.server_address[:2]
        host = str(address) if isinstance(address, str) else address.decode()
        return f"{self._scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self, path: str | None = None) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(self, count: int, timeout_s: float = 60.0, path: str | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.received(path)) >= count:
                return True
            time.sleep(0.02)
        return False


def self_signed_certificate(directory: str | Path, *, names: Sequence[str] = ()) -> tuple[str, str]:
    """A certificate and key for 127.0.0.1 (and DNS ``names``), made now with openssl."""
    cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make a test certificate")
    subprocess.run(  # noqa: S603 - fixed arguments, our own temporary paths
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=" + ",".join(["IP:127.0.0.1", *(f"DNS:{n}" for n in names)]),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)
