"""The Lambda path (issue 32, item 3): `processor.aws_lambda.handler` against Powertools'
`BatchProcessor` with a record handler doing the same work, on a 1,000-record DynamoDB
Streams event, and on a 1,000-record Kinesis event carrying the same changes as Kinesis Data
Streams for DynamoDB writes them (base64 JSON; Powertools' handler decodes the images with
the TypeDeserializer its DynamoDB stream records use, there being no typed DynamoDB record
for Kinesis), each arriving
JSON-decoded, as Lambda hands it. Records/s per core (CPU time,
alternating rounds of 6,000 records, medians; `make bench` runs these rows in a fresh
interpreter, see ``isolated_rows``), and the cold start of each: a fresh interpreter's imports plus
its first event, wall clock, median of several processes. Ours starts from the package
`make lambda-zip` builds (`build_zip.py --tree`), as Lambda runs it: the package on
PYTHONPATH and no site-packages."""

from __future__ import annotations

import base64
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

ROOT = Path(__file__).resolve().parents[1]

ROUNDS = 9
EVENTS = 6  # 6,000 records a round: ours spends about 60 ms of CPU on them
COLD_STARTS = 5


def read_images(records: Sequence[Any]) -> None:
    """The work both handlers do: every attribute of both images, decoded."""
    for record in records:
        len(record.new_image or {})
        len(record.old_image or {})


def _event(seed: int) -> dict[str, Any]:
    return {"Records": json.loads(page(seed))["Records"]}


def _kinesis_event(seed: int) -> dict[str, Any]:
    """The same changes as a Kinesis event: each DynamoDB record's change, as DynamoDB
    writes it to Kinesis (µs creation time), base64 in ``kinesis.data``."""
    records = []
    for index, record in enumerate(_event(seed)["Records"]):
        ddb = record["dynamodb"]
        change = {
            "awsRegion": "us-east-1",
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "userIdentity": None,
            "recordFormat": "application/json",
            "tableName": "orders",
            "dynamodb": {
                "ApproximateCreationDateTime": int(ddb["ApproximateCreationDateTime"]) * 1_000_000,
                "ApproximateCreationDateTimePrecision": "MICROSECOND",
                "Keys": ddb["Keys"],
                **{k: ddb[k] for k in ("NewImage", "OldImage") if k in ddb},
                "SizeBytes": ddb.get("SizeBytes", 100),
            },
            "eventSource": "aws:dynamodb",
        }
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": json.dumps(ddb["Keys"], sort_keys=True),
                    "sequenceNumber": f"4959{seed:06d}{index:010d}",
                    "data": base64.b64encode(json.dumps(change).encode()).decode(),
                    "approximateArrivalTimestamp": float(ddb["ApproximateCreationDateTime"]),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:4959{seed:06d}{index:010d}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/dsp",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/orders-kds",
            }
        )
    return {"Records": records}


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


def _powertools_kinesis() -> Callable[[dict[str, Any]], Any]:
    # the deserializer Powertools' DynamoDB stream records use (Binary stays base64 text)
    from aws_lambda_powertools.shared.dynamodb_deserializer import (  # noqa: PLC0415
        TypeDeserializer,
    )
    from aws_lambda_powertools.utilities.batch import (  # noqa: PLC0415
        BatchProcessor,
        EventType,
        process_partial_response,
    )

    deserializer = TypeDeserializer()

    def record_handler(record: Any) -> None:
        change = record.kinesis.data_as_json()["dynamodb"]
        for image in ("NewImage", "OldImage"):
            values = change.get(image) or {}
            len({k: deserializer.deserialize(v) for k, v in values.items()})

    def handle(event: dict[str, Any]) -> Any:
        processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=None
        )

    return handle


def _config(tmp: str, consumer: str = "benchmarks.lambda_path:read_images") -> Path:
    config = Path(tmp) / f"lambda-{consumer.partition(':')[0]}.toml"
    config.write_text(
        f'[dead_letter]\npath = "{Path(tmp) / "dl.jsonl"}"\nlambda_tmp = true\n'
        '[logging]\nlevel = "ERROR"\n'
        f'[[routes]]\nname = "images"\nconsumer = "{consumer}"\n'
    )
    return config


CONSUMER = """
from collections.abc import Sequence
from typing import Any


def read_images(records: Sequence[Any]) -> None:
    for record in records:
        len(record.new_image or {})
        len(record.old_image or {})
"""


def _packaged(tmp: str) -> tuple[Path, dict[str, str]]:
    """The function as `make lambda-zip` packages it, with a module holding the consumer
    beside it: (the package's directory, the environment that runs it as Lambda does)."""
    tree = Path(tmp) / "package"
    subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "lambda" / "build_zip.py"), "--tree", str(tree)],
        check=True, capture_output=True,
    )  # fmt: skip
    code = Path(tmp) / "code"
    code.mkdir()
    (code / "cold_consumer.py").write_text(CONSUMER)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": f"{tree}:{code}",
        "DSP_CONFIG": str(_config(tmp, "cold_consumer:read_images")),
        "AWS_REGION": "us-east-1",
        "PYTHONDONTWRITEBYTECODE": "1",  # /var/task is read-only: nothing compiled is kept
    }
    return tree, env


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


def _cold(
    imports: str,
    first: str,
    event_file: Path,
    env: dict[str, str],
    *,
    flags: Sequence[str] = (),
    cwd: Path | None = None,
) -> float:
    script = COLD.format(imports=imports, first=first)
    runs = []
    for _ in range(COLD_STARTS):
        done = subprocess.run(
            [sys.executable, *flags, "-c", script, str(event_file)],
            capture_output=True, text=True, check=True, env=env, cwd=cwd or Path.cwd(),
        )  # fmt: skip
        runs.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def _ratios(
    events: list[dict[str, Any]], theirs: Callable[[dict[str, Any]], Any]
) -> tuple[float, float]:
    """(ours, theirs) records/s per core: alternating rounds, medians."""
    from processor import aws_lambda  # noqa: PLC0415

    records = sum(len(e["Records"]) for e in events)
    aws_lambda.reset()
    ours_s, theirs_s = [], []
    for _ in range(ROUNDS):
        theirs_s.append(_cpu(theirs, events))
        ours_s.append(_cpu(lambda e: aws_lambda.handler(e, None), events))
    aws_lambda.reset()
    return records / statistics.median(ours_s), records / statistics.median(theirs_s)


def rows() -> list[str]:
    events = [_event(seed) for seed in range(1, EVENTS + 1)]
    kinesis = [_kinesis_event(seed) for seed in range(1, EVENTS + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DSP_CONFIG": str(_config(tmp)), "AWS_REGION": "us-east-1"}
        os.environ["DSP_CONFIG"], os.environ["AWS_REGION"] = env["DSP_CONFIG"], "us-east-1"
        ours, theirs = _ratios(events, _powertools())
        ours_k, theirs_k = _ratios(kinesis, _powertools_kinesis())
        event_file = Path(tmp) / "event.json"
        event_file.write_text(json.dumps(events[0]))
        tree, packaged = _packaged(tmp)
        ours_cold = _cold(
            "from processor import aws_lambda",
            "aws_lambda.handler(event, None)",
            event_file,
            packaged,
            flags=["-S"],  # no site-packages: the package alone, as in Lambda
            cwd=tree,
        )
        theirs_cold = _cold(
            "from benchmarks.lambda_path import _powertools\nhandle = _powertools()",
            "handle(event)",
            event_file,
            env,
        )
    return [
        "| Lambda handler, 1,000-record events, both images read | ours "
        "(`processor.aws_lambda.handler`) | Powertools `BatchProcessor` | ratio |",
        "|---|---:|---:|---:|",
        f"| DynamoDB Streams event: records/s per core (JSON-decoded, as Lambda hands it) "
        f"| {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.1f}x |",
        f"| Kinesis event (Kinesis Data Streams for DynamoDB): records/s per core "
        f"| {ours_k:,.0f} | {theirs_k:,.0f} | {ours_k / theirs_k:.1f}x |",
        f"| cold start: imports + the first event, ms (median of {COLD_STARTS} processes; "
        "ours from the `make lambda-zip` package) "
        f"| {ours_cold * 1000:,.0f} | {theirs_cold * 1000:,.0f} | |",
    ]


def isolated_rows() -> list[str]:
    """:func:`rows` in a fresh interpreter, as Lambda runs a function: a process holding the
    handler alone. `make bench`'s own process hosts moto and every earlier row's heap, and
    there the handlers' CPU per record drifted by up to a fifth between runs (ours more than
    Powertools', being the one that allocates less per record). Both sides still share the
    one process, alternating."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.lambda_path"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return done.stdout.strip().splitlines()


if __name__ == "__main__":
    from processor.process import tune_gc

    tune_gc()  # as `make bench` and the handler's runtime do: both sides run under it
    print("\n".join(rows()))
