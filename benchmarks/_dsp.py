"""`dsp run` as a separate process for the end-to-end benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from processor.testing.stream_double import Scenario, StreamDouble

START_UP_S = 3.0  # imports, the lease table, the first poll


@contextmanager
def dsp_run(
    endpoint: str,
    config: str,
    *,
    env: dict[str, str] | None = None,
    stderr: Path | None = None,
    args: Sequence[str] = (),
    start_up_s: float = START_UP_S,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `dsp run` with ``config`` (TOML without ``[dead_letter]``, which goes to a temporary
    file) against the moto server at ``endpoint`` (and ``env``, e.g. another streams endpoint;
    its logs to ``stderr`` if given; more command-line ``args``); yields once it has started
    (``start_up_s`` later); stops it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dsp.toml"
        path.write_text(f'{config}\n[dead_letter]\npath = "{Path(tmp) / "dl.jsonl"}"\n')
        log = stderr.open("w") if stderr is not None else None
        worker = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "run", "--config", str(path), *args],
            env={**os.environ, "DSP_AWS__ENDPOINT_URL": endpoint, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=log or subprocess.DEVNULL,
        )
        try:
            time.sleep(start_up_s)
            yield worker
        finally:
            worker.terminate()
            worker.wait(timeout=120)  # 1,000 leases are released one by one
            if log is not None:
                log.close()


def noop(records: list[object]) -> None:
    """A consumer that does nothing: these benchmarks measure the worker, not a consumer."""


@contextmanager
def dsp_on_double(
    endpoint: str,
    scenario: Scenario,
    *,
    name: str,
    stream: str = "",
    checkpoints: str = "",
    args: Sequence[str] = (),
    start_up_s: float = START_UP_S,
    double: StreamDouble | None = None,
    consumer: str = "benchmarks._dsp:noop",
    env: dict[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`dsp run` owning every shard of ``scenario`` (served by the stream double, or by
    ``double`` if given), leases in the moto server at ``endpoint``, one route to ``consumer``
    (a no-op by default), JSON logs at INFO; yields the process and its log file. ``stream`` /
    ``checkpoints``: more settings of those sections; ``env``: more environment."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        served = double if double is not None else stack.enter_context(StreamDouble(scenario))
        config = f"""
[stream]
arn = "{served.stream_arn}"
{stream}
[checkpoints]
table = "{name}-{uuid.uuid4().hex[:8]}"
application = "{name}"
max_leases = {len(scenario.shards)}
{checkpoints}
[logging]
level = "INFO"
format = "json"
[[routes]]
name = "bench"
consumer = "{consumer}"
"""
        log = Path(tmp) / "stderr.log"
        streams = {"DSP_AWS__STREAMS_ENDPOINT_URL": served.endpoint, **(env or {})}
        with dsp_run(
            endpoint, config, env=streams, stderr=log, args=args, start_up_s=start_up_s
        ) as process:
            yield process, log


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a `dsp run` (so far: it may be running)."""
    text = log.read_text()
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines.pop()  # being written: read it next time
    return [json.loads(line) for line in lines if line.startswith("{")]


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far, user + system (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """The process's resident memory now (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def threads_of(pid: int) -> int:
    """How many threads the process runs now (from /proc)."""
    return len(os.listdir(f"/proc/{pid}/task"))


def cache_redis_url() -> str:
    """The Redis the cache routes use: this machine's at 127.0.0.1:6379 when one answers,
    else the in-memory cache (the benchmarks then say so in their rows)."""
    import redis  # noqa: PLC0415 - only the benchmarks with a cache route need it

    try:
        return "redis://127.0.0.1:6379/0" if redis.Redis().ping() else "memory"
    except redis.RedisError:
        return "memory"
