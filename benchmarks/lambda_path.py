"""The Lambda path (issue 32, item 3): `processor.aws_lambda.handler` against Powertools'
`BatchProcessor` with a record handler doing the same work, on a 1,000-record DynamoDB
Streams event that arrives JSON-decoded, as Lambda hands it. Records/s per core (CPU time,
alternating rounds, medians), and the cold start of each: a fresh interpreter's imports plus
its first event, wall clock, median of several processes."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.pages import page

ROUNDS = 7
COLD_STARTS = 5


def read_images(records: Sequence[Any]) -> None:
    """The work both handlers do: every attribute of both images, decoded."""
    for record in records:
        len(record.new_image or {})
        len(record.old_image or {})


def _event(seed: int) -> dict[str, Any]:
    return {"Records": json.loads(page(seed))["Records"]}


def _powertools() -> Callable[[dict[str, Any]], Any]:
    from aws_lambda_powertools.utilities.batch import (  # noqa: PLC0415
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    def record_handler(record: Any) -> None:
        len(record.dynamodb.new_image or {})
        len(record.dynamodb.old_image or {})

    def handle(event: dict[str, Any]) -> Any:
        processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=None
        )

    return handle


def _config(tmp: str) -> Path:
    config = Path(tmp) / "lambda.toml"
    config.write_text(
        f'[dead_letter]\npath = "{Path(tmp) / "dl.jsonl"}"\nlambda_tmp = true\n'
        '[logging]\nlevel = "ERROR"\n'
        '[[routes]]\nname = "images"\nconsumer = "benchmarks.lambda_path:read_images"\n'
    )
    return config


def _cpu(handle: Callable[[dict[str, Any]], Any], events: list[dict[str, Any]]) -> float:
    started = time.process_time()
    for event in events:
        handle(event)
    return time.process_time() - started


COLD = """
import json, sys, time
started = time.perf_counter()
{imports}
event = json.load(open(sys.argv[1]))
{first}
print(time.perf_counter() - started)
"""


def _cold(imports: str, first: str, event_file: Path, env: dict[str, str]) -> float:
    script = COLD.format(imports=imports, first=first)
    runs = []
    for _ in range(COLD_STARTS):
        done = subprocess.run(
            [sys.executable, "-c", script, str(event_file)],
            capture_output=True, text=True, check=True, env=env, cwd=Path.cwd(),
        )  # fmt: skip
        runs.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def rows() -> list[str]:
    from processor import aws_lambda  # noqa: PLC0415

    events = [_event(seed) for seed in range(1, 4)]
    records = sum(len(e["Records"]) for e in events)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DSP_CONFIG": str(_config(tmp)), "AWS_REGION": "us-east-1"}
        os.environ["DSP_CONFIG"], os.environ["AWS_REGION"] = env["DSP_CONFIG"], "us-east-1"
        aws_lambda.reset()
        powertools = _powertools()
        ours_s, theirs_s = [], []
        for _ in range(ROUNDS):
            theirs_s.append(_cpu(powertools, events))
            ours_s.append(_cpu(lambda e: aws_lambda.handler(e, None), events))
        aws_lambda.reset()
        event_file = Path(tmp) / "event.json"
        event_file.write_text(json.dumps(events[0]))
        ours_cold = _cold(
            "from processor import aws_lambda", "aws_lambda.handler(event, None)", event_file, env
        )
        theirs_cold = _cold(
            "from benchmarks.lambda_path import _powertools\nhandle = _powertools()",
            "handle(event)",
            event_file,
            env,
        )
    ours = records / statistics.median(ours_s)
    theirs = records / statistics.median(theirs_s)
    return [
        "| Lambda handler, 1,000-record DynamoDB Streams events, both images read | ours "
        "(`processor.aws_lambda.handler`) | Powertools `BatchProcessor` | ratio |",
        "|---|---:|---:|---:|",
        f"| records/s per core (the event JSON-decoded, as Lambda hands it) | {ours:,.0f} "
        f"| {theirs:,.0f} | {ours / theirs:.1f}x |",
        f"| cold start: imports + the first event, ms (median of {COLD_STARTS} processes) "
        f"| {ours_cold * 1000:,.0f} | {theirs_cold * 1000:,.0f} | |",
    ]


if __name__ == "__main__":
    print("\n".join(rows()))
