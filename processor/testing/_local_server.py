"""A threaded HTTP/1.1 server on 127.0.0.1 for the test doubles (AWS-style JSON over POST)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

#: (X-Amz-Target, request headers, body) -> (status, response headers, body)
Answer = Callable[[str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


class LocalJsonServer:
    """Serve ``answer`` on a free port of 127.0.0.1; use as a context manager."""

    def __init__(self, answer: Answer) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one segment per answer: no delayed-ACK stalls
            wbufsize = 64 * 1024

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = self.headers.get("X-Amz-Target", "")
                status, headers, payload = answer(target, dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # poll every 50 ms: shutdown() returns at once instead of waiting out 0.5 s
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class AwsError(Exception):
    """An error a double answers as AWS does: its code (``__type``) and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class Served:
    """What a test server built on a :class:`LocalJsonServer` (``self._server``) offers: its
    ``endpoint``, and running while used as a context manager."""

    _server: LocalJsonServer

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    def __enter__(self) -> Self:
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)


def forward(
    pool: Any, upstream: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    """POST a request on to ``upstream`` (a proxy's step): its status, the headers an AWS
    client reads (content type, request id), and its body."""
    keep = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    response = pool.request("POST", upstream + "/", body=body, headers=keep)
    out = {
        k: v
        for k, v in response.headers.items()
        if k.lower() in ("content-type", "x-amzn-requestid")
    }
    return response.status, out, response.data
