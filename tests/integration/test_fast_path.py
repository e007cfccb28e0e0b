"""The fast path for GetRecords and lease renewals (ADR 0030), against the stream double and
the moto server: it answers what botocore would, signs what botocore's client signs, and
leaves every outcome but success to botocore."""

from __future__ import annotations

import json
import socket
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from processor.aws import AwsClients, make_clients
from processor.errors import IteratorExpiredError, LeaseLostError, ProcessorError
from processor.fast_path import FastPath, fast_path_for
from processor.leases.dynamodb import DynamoDBLeaseStore
from processor.sources.dynamodb.adapter import StreamsAdapter
from processor.sources.lineage import Shard
from processor.testing._local_server import LocalJsonServer, Served
from processor.testing.stream_double import Scenario, StreamDouble

KEY, SECRET = "AKIDFASTPATHTEST", "fast-path-secret"


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _clients(endpoint: str, *, fast_path: bool = True, streams: str | None = None) -> AwsClients:
    return make_clients(
        region="us-east-1",
        endpoint_url=endpoint,
        streams_endpoint_url=streams,
        retry_mode="standard",
        max_attempts=3,
        pool_size=4,
        fast_path=fast_path,
    )


@pytest.fixture
def double() -> Iterator[StreamDouble]:
    with StreamDouble(Scenario.flat(2, records_per_shard=1500, closed=True)) as served:
        yield served


def _read_shard(adapter: StreamsAdapter, arn: str, shard_id: str) -> list[Any]:
    pages, iterator = [], adapter.get_iterator(arn, shard_id, "TRIM_HORIZON")
    while iterator:
        page = adapter.get_records(iterator, limit=1000, shard_id=shard_id)
        pages.append(page)
        iterator = page.next_iterator  # type: ignore[assignment]
    return [
        (r.sequence_number, r.event_name, r.keys, r.new_image) for p in pages for r in p.records
    ]


def test_get_records_reads_what_botocore_reads(double: StreamDouble) -> None:
    fast_clients = _clients(double.endpoint)
    fast = fast_clients.fast("dynamodbstreams")
    assert fast is not None
    plain = StreamsAdapter(_clients(double.endpoint, fast_path=False).streams)
    quick = StreamsAdapter(fast_clients.streams, fast=fast)
    shard_id = plain.describe(double.stream_arn).shards[0].shard_id

    expected = _read_shard(plain, double.stream_arn, shard_id)
    got = _read_shard(quick, double.stream_arn, shard_id)

    assert len(expected) == 1500
    assert got == expected
    assert (fast.calls, fast.fallbacks) == (2, 0)  # two pages of a closed shard, both fast


def test_an_error_is_botocores_to_raise(double: StreamDouble) -> None:
    """ExpiredIteratorException: the fast path hands the call over, and the adapter raises what
    it always raised (botocore's parse, the project's error)."""
    double.scenario.expire_after_calls = 0
    clients = _clients(double.endpoint)
    fast = clients.fast("dynamodbstreams")
    adapter = StreamsAdapter(clients.streams, fast=fast)
    shard_id = adapter.describe(double.stream_arn).shards[0].shard_id
    iterator = adapter.get_iterator(double.stream_arn, shard_id, "TRIM_HORIZON")
    before = double.calls["GetRecords"]

    with pytest.raises(IteratorExpiredError, match="ExpiredIteratorException"):
        adapter.get_records(iterator, limit=1000, shard_id=shard_id)

    assert fast is not None
    assert (fast.calls, fast.fallbacks) == (0, 1)
    assert double.calls["GetRecords"] - before == 2  # the fast attempt, then botocore's one


def test_a_throttled_poll_is_retried_by_botocore(double: StreamDouble) -> None:
    clients = _clients(double.endpoint)
    fast = clients.fast("dynamodbstreams")
    adapter = StreamsAdapter(clients.streams, fast=fast)
    shard_id = adapter.describe(double.stream_arn).shards[0].shard_id
    iterator = adapter.get_iterator(double.stream_arn, shard_id, "TRIM_HORIZON")
    iterator = adapter.get_records(iterator, limit=10, shard_id=shard_id).next_iterator or ""
    assert double.calls["GetRecords"] == 1
    double.scenario.throttle_every = 2  # the next call (the fast one) is throttled

    page = adapter.get_records(iterator, limit=1000, shard_id=shard_id)

    assert len(page.records) == 1000
    assert fast is not None
    assert (fast.calls, fast.fallbacks) == (1, 1)
    assert double.calls["GetRecords"] == 3  # fast, throttled; then botocore's, answered


class _Recorder(Served):
    """A JSON endpoint that keeps each request and answers with a canned 200 body."""

    def __init__(self, answer: bytes, *, crc: str | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._answer, self._crc = answer, crc
        self._lock = threading.Lock()
        self._server = LocalJsonServer(self._handle)

    def _handle(
        self, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append((target, headers, body))
        crc = self._crc if self._crc is not None else str(zlib.crc32(self._answer))
        return (
            200,
            {"Content-Type": "application/x-amz-json-1.0", "x-amz-crc32": crc},
            self._answer,
        )


def _verifies(headers: dict[str, str], body: bytes, url: str) -> bool:
    """Whether the request's SigV4 signature is the one its secret gives: recomputed with
    botocore's signer over the headers it says it signed, at the time it says it signed."""
    lower = {k.lower(): v for k, v in headers.items()}
    authorization = lower["authorization"]
    scope = authorization.split("Credential=")[1].split(",")[0].split("/")
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    signature = authorization.split("Signature=")[1]
    request = AWSRequest(
        method="POST", url=url, data=body, headers={h: lower[h] for h in signed if h != "host"}
    )
    request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(Credentials(KEY, SECRET), scope[3], scope[2])
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    return bool(signer.signature(string_to_sign, request) == signature)


def test_the_fast_path_signs_and_sends_what_the_botocore_client_does() -> None:
    """The same endpoint, operation, body and credential scope as botocore's own request for
    the same call, and a signature that verifies."""
    answer = json.dumps({"Records": [], "NextShardIterator": "next"}).encode()
    with _Recorder(answer) as recorder:
        url = recorder.endpoint
        clients = _clients(url, streams=url)
        fast = clients.fast("dynamodbstreams")
        assert fast is not None
        clients.streams.get_records(ShardIterator="iter-1", Limit=1000)
        assert fast.call("GetRecords", {"ShardIterator": "iter-1", "Limit": 1000}) == answer
        (t1, botocores, body1), (t2, ours, body2) = recorder.requests

    assert t1 == t2 == "DynamoDBStreams_20120810.GetRecords"
    assert json.loads(body1) == json.loads(body2)
    theirs = {k.lower(): v for k, v in botocores.items()}
    mine = {k.lower(): v for k, v in ours.items()}
    assert mine["content-type"] == theirs["content-type"]
    scope = theirs["authorization"].split("Credential=")[1].split(",")[0].split("/")
    assert mine["authorization"].split("Credential=")[1].split(",")[0].split("/")[2:] == scope[2:]
    assert scope[0] == KEY
    assert scope[2:4] == ["us-east-1", "dynamodb"]
    assert _verifies(ours, body2, url + "/")
    assert _verifies(botocores, body1, url + "/")  # the check itself is botocore's way
    tampered = {**ours, "X-Amz-Target": "DynamoDBStreams_20120810.GetShardIterator"}
    assert not _verifies(tampered, body2, url + "/")


def test_a_body_that_fails_its_crc_is_left_to_botocore() -> None:
    answer = json.dumps({"Records": []}).encode()
    with _Recorder(answer, crc=str(zlib.crc32(answer) ^ 1)) as recorder:
        url = recorder.endpoint
        fast = _clients(url, streams=url).fast("dynamodbstreams")
        assert fast is not None
        assert fast.call("GetRecords", {"ShardIterator": "i", "Limit": 1}) is None
    assert (fast.calls, fast.fallbacks) == (0, 1)


def test_nothing_answering_is_left_to_botocore() -> None:
    with _Recorder(b"{}") as recorder:
        url = recorder.endpoint  # closed below: nothing listens there any more
    clients = _clients(url, streams=url)
    fast = clients.fast("dynamodbstreams")
    assert fast is not None
    assert fast.call("GetRecords", {"ShardIterator": "i", "Limit": 1}) is None
    adapter = StreamsAdapter(clients.streams, fast=fast)
    with pytest.raises(ProcessorError, match="GetRecords"):
        adapter.get_records("i", limit=1, shard_id="shard-1")


def test_no_fast_path_behind_a_proxy_or_when_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _clients("http://127.0.0.1:9").fast("dynamodbstreams") is not None
    assert _clients("http://127.0.0.1:9", fast_path=False).fast("dynamodbstreams") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert _clients("http://127.0.0.1:9").fast("dynamodbstreams") is None


def test_no_fast_path_for_another_protocol() -> None:
    sqs = boto3.client(
        "sqs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9"
    )  # the query/JSON hybrid: no targetPrefix we send to
    found = fast_path_for(
        sqs, None, connect_timeout_s=1, read_timeout_s=1
    )  # and no credentials either
    assert found is None


def _store(
    endpoint: str, table: str, *, fast_path: bool
) -> tuple[DynamoDBLeaseStore, FastPath | None]:
    clients = _clients(endpoint, fast_path=fast_path)
    fast = clients.fast("dynamodb")
    store = DynamoDBLeaseStore(
        clients.dynamodb, table=table, application="fast", stream_arn="arn", fast=fast
    )
    return store, fast


def test_renewals_take_the_fast_path_and_see_handoffs_and_losses(
    endpoint: str, unique: str
) -> None:
    store, fast = _store(endpoint, f"fast-{unique}", fast_path=True)
    store.ensure_table()
    shard = Shard("shard-1", None, "1", None)
    store.create_missing([shard], set())
    (observed,) = store.list_leases()
    lease = store.take(observed, "worker-a")
    assert lease is not None

    renewed = store.renew(lease, lag_s=1.5)
    assert fast is not None
    assert (fast.calls, fast.fallbacks) == (1, 0)
    (stored,) = store.list_leases()
    assert stored.heartbeat == renewed.heartbeat
    assert stored.lag_s == 1.5

    assert store.request_handoff(stored, "worker-b")
    assert store.renew(renewed).handoff_to == "worker-b"  # read from the fast answer
    assert (fast.calls, fast.fallbacks) == (2, 0)

    (stored,) = store.list_leases()
    assert store.take(stored, "worker-b") is not None
    with pytest.raises(LeaseLostError):
        store.renew(renewed)
    assert (fast.calls, fast.fallbacks) == (2, 1)  # the condition failed: botocore said so


def test_each_call_signs_with_the_credentials_current_values() -> None:
    """botocore refreshes expiring credentials (a role's session token) inside
    ``get_frozen_credentials``; the fast path asks for them at every call."""
    tokens = iter(["token-1", "token-2"])

    class Rotating:
        def get_frozen_credentials(self) -> Any:
            return Credentials(KEY, SECRET, next(tokens))

    with _Recorder(b"{}") as recorder:
        url = recorder.endpoint
        client = _clients(url, streams=url).streams
        fast = fast_path_for(client, Rotating(), connect_timeout_s=1, read_timeout_s=5)
        assert fast is not None
        fast.call("GetRecords", {"ShardIterator": "i", "Limit": 1})
        fast.call("GetRecords", {"ShardIterator": "i", "Limit": 1})
        sent = [
            ({k.lower(): v for k, v in headers.items()}["x-amz-security-token"], headers, body)
            for _, headers, body in recorder.requests
        ]
    assert [token for token, _, _ in sent] == ["token-1", "token-2"]
    assert all(_verifies(headers, body, url + "/") for _, headers, body in sent)


class _ClosesAfterEachAnswer:
    """An HTTP/1.1 server that answers one request per connection and then closes it without
    saying so (no ``Connection: close``), as a server does with a connection idle too long."""

    def __init__(self, answer: bytes) -> None:
        self.connections = 0
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with conn:
                self.connections += 1
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                    + f"Content-Length: {len(self._answer)}\r\n\r\n".encode()
                    + self._answer
                )

    def close(self) -> None:
        self._listener.close()


def test_a_kept_alive_connection_the_server_dropped_is_replaced_once() -> None:
    """The second call finds its connection closed by the server: it reconnects and is still
    answered on the fast path, not handed to botocore."""
    server = _ClosesAfterEachAnswer(b'{"Records": []}')
    try:
        url = server.endpoint
        fast = _clients(url, streams=url).fast("dynamodbstreams")
        assert fast is not None
        for _ in range(3):
            assert fast.call("GetRecords", {"ShardIterator": "i", "Limit": 1}) == b'{"Records": []}'
        assert (fast.calls, fast.fallbacks) == (3, 0)
        assert server.connections == 3
        fast.close()
    finally:
        server.close()
