"""A recording reverse proxy in front of the moto server: which AWS actions a command called.

dsp is pointed at the proxy (``DSP_AWS__ENDPOINT_URL``); the proxy forwards every request
unchanged to the real endpoint and records the action (``X-Amz-Target`` for DynamoDB,
DynamoDB Streams and SQS's JSON protocol; ``Action=`` for SQS's query protocol) and the
resource named in the request.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# botocore's operation name -> the IAM action that authorises it, where they differ
# SQS's developer guide: permissions for SendMessage, DeleteMessage and ChangeMessageVisibility
# set those of their batch versions, which cannot be granted on their own
_IAM_ACTION = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


@dataclass(frozen=True)
class Call:
    action: str  # the IAM action, e.g. "dynamodb:GetRecords"
    resource: str | None  # the ARN named in the request (None where the request names none)


def _resource(service: str, body: dict[str, Any], region: str, account: str) -> str | None:
    if service == "dynamodb":
        if "StreamArn" in body:
            return str(body["StreamArn"])
        if "TableName" in body:
            return f"arn:aws:dynamodb:{region}:{account}:table/{body['TableName']}"
        if "RequestItems" in body:
            (table,) = body["RequestItems"]
            return f"arn:aws:dynamodb:{region}:{account}:table/{table}"
        return None
    if service == "kinesis":  # GetRecords names only its iterator: None
        if "StreamARN" in body:
            return str(body["StreamARN"])
        if "StreamName" in body:
            return f"arn:aws:kinesis:{region}:{account}:stream/{body['StreamName']}"
        return None
    url = body.get("QueueUrl")
    if url:
        return f"arn:aws:sqs:{region}:{account}:{str(url).rstrip('/').rsplit('/', 1)[-1]}"
    return None


class RecordingProxy:
    def __init__(self, upstream: str, *, region: str = "us-east-1", account: str) -> None:
        parsed = urllib.parse.urlparse(upstream)
        self._upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._region = region
        self._account = account
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy._record(self.headers.get("X-Amz-Target"), body)
                connection = http.client.HTTPConnection(*proxy._upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    headers["Host"] = f"{proxy._upstream[0]}:{proxy._upstream[1]}"
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    connection.close()

            do_POST = do_GET = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _record(self, target: str | None, body: bytes) -> None:
        if target:  # JSON protocols: "DynamoDB_20120810.GetItem", "AmazonSQS.SendMessage"
            prefix, _, operation = target.partition(".")
            service = {"AmazonSQS": "sqs", "Kinesis_20131202": "kinesis"}.get(prefix, "dynamodb")
            try:
                document = json.loads(body or b"{}")
            except ValueError:
                document = {}
        else:  # SQS's query protocol
            form = urllib.parse.parse_qs(body.decode(errors="replace"))
            if "Action" not in form:
                return
            service, operation = "sqs", form["Action"][0]
            document = {k: v[0] for k, v in form.items()}
        action = f"{service}:{operation}"
        call = Call(
            _IAM_ACTION.get(action, action),
            _resource(service, document, self._region, self._account),
        )
        with self._lock:
            self.calls.append(call)

    def reset(self) -> list[Call]:
        with self._lock:
            calls, self.calls = self.calls, []
        return calls


@contextmanager
def recording_proxy(upstream: str, *, account: str) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(upstream, account=account)
    thread = threading.Thread(target=proxy._server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy._server.shutdown()
        proxy._server.server_close()
