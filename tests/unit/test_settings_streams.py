"""`[[streams]]`: several streams in one configuration, validated with errors naming the key,
each entry overridable by DSP_STREAMS__<NAME>__<KEY>, and what each command makes of them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from processor.app.streams import reader_threads, stream_settings, worker_settings
from processor.aws_lambda import LAMBDA_DEFAULTS
from processor.errors import ConfigError
from processor.ops.iam import policy_for
from processor.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]

STREAMS = """
[[streams]]
name = "orders"
table = "orders"

[[streams]]
name = "payments"
source = "kinesis"
kinesis_stream = "arn:aws:kinesis:eu-west-1:123456789012:stream/payments-kds"
table = "payments"
reader_threads = 8

[checkpoints]
application = "backend"

[[routes]]
name = "orders-only"
consumer = "cache"
streams = ["orders"]
options = { keys = ["o:{pk}"] }

[[routes]]
name = "everything"
consumer = "cache"
options = { keys = ["e:{pk}"] }
"""


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "dsp.toml"
    path.write_text(text)
    return load_settings(path, environ=environ or {})


def test_several_streams_load_with_their_names_and_namespaces(tmp_path: Path) -> None:
    s = load(tmp_path, STREAMS)
    assert [name for name, _ in s.named_streams] == ["orders", "payments"]
    assert s.lease_namespace("orders") == "backend/orders"
    assert s.lease_namespace("default") == "backend"  # where a single [stream] keeps them
    payments = stream_settings(s, "payments")
    assert (payments.source, payments.table) == ("kinesis", "payments")
    # one reader pool: the largest bound among the streams
    assert reader_threads(s) == 32
    assert worker_settings(s, payments).reader_threads == 32
    assert worker_settings(s, payments).native_at_timestamp is True
    assert worker_settings(s, stream_settings(s, "orders")).native_at_timestamp is False


def test_a_single_stream_is_named_default_and_keeps_the_application_namespace(
    tmp_path: Path,
) -> None:
    text = STREAMS.split("[checkpoints]")[1]
    s = load(tmp_path, '[stream]\ntable = "orders"\n[checkpoints]' + text.replace(
        'streams = ["orders"]\n', ""
    ))  # fmt: skip
    assert [name for name, _ in s.named_streams] == ["default"]
    assert s.lease_namespace("default") == "backend"
    assert s.only_stream.table == "orders"


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (
            lambda t: '[stream]\ntable = "xyz"\n' + t,
            "streams",
            "keep one form",
        ),
        (
            lambda t: t.replace('name = "payments"', 'name = "orders"'),
            "streams.1.name",
            "used twice",
        ),
        (
            lambda t: t.replace('streams = ["orders"]', 'streams = ["order"]'),
            "routes.0.streams",
            "no stream named 'order'; streams: orders, payments",
        ),
        (
            lambda t: t.replace('name = "everything"', 'name = "everything"\nstreams = ["orders"]'),
            "streams.1.name",
            "no route takes this stream's records",
        ),
        (
            lambda t: t.replace('name = "orders"', 'name = "Orders!"'),
            "streams.0.name",
            "String should match pattern",
        ),
        (
            lambda t: t.replace('table = "orders"\n', "", 1),
            "streams.0",
            "set stream.table",
        ),
    ],
    ids=["both-forms", "duplicate-name", "unknown-stream", "stream-without-route", "bad-name",
         "entry-without-table"],
)  # fmt: skip
def test_bad_streams_name_the_key(tmp_path: Path, change: object, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, change(STREAMS))  # type: ignore[operator]
    assert caught.value.key == key, str(caught.value)
    assert message in str(caught.value)


def test_neither_form_names_the_stream_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, STREAMS.split("[checkpoints]")[1].join(["[checkpoints]", ""]))
    assert caught.value.key == "stream"
    assert "[[streams]]" in str(caught.value)


def test_an_entry_is_overridden_by_its_name_and_the_list_replaced_by_json(tmp_path: Path) -> None:
    s = load(tmp_path, STREAMS, {"DSP_STREAMS__PAYMENTS__READER_THREADS": "64"})
    assert stream_settings(s, "payments").reader_threads == 64
    assert reader_threads(s) == 64
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, STREAMS, {"DSP_STREAMS__REFUNDS__TABLE": "refunds"})
    assert caught.value.key == "DSP_STREAMS__REFUNDS__TABLE"
    assert "no stream named 'refunds'" in str(caught.value)
    s = load(
        tmp_path,
        STREAMS.replace('streams = ["orders"]\n', ""),
        {"DSP_STREAMS": '[{"name": "refunds", "table": "refunds"}]'},
    )
    assert [name for name, _ in s.named_streams] == ["refunds"]


def test_choosing_streams_keeps_their_routes(tmp_path: Path) -> None:
    s = load(tmp_path, STREAMS).for_streams(["payments"])
    assert [name for name, _ in s.named_streams] == ["payments"]
    assert [r.name for r in s.routes] == ["everything"]  # orders-only takes no payments
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, STREAMS).for_streams(["refunds"])
    assert caught.value.key == "--stream"


def test_one_stream_commands_say_to_choose_one(tmp_path: Path) -> None:
    s = load(tmp_path, STREAMS)
    with pytest.raises(ConfigError) as caught:
        s.only_stream  # noqa: B018
    assert caught.value.key == "streams"
    assert "--stream" in str(caught.value)


def test_lambda_defaults_do_not_add_a_stream_beside_streams(tmp_path: Path) -> None:
    path = tmp_path / "dsp.toml"
    path.write_text(STREAMS)
    s = load_settings(path, environ={}, defaults=LAMBDA_DEFAULTS)
    assert s.stream is None
    assert len(s.named_streams) == 2


def test_the_iam_policy_covers_every_stream(tmp_path: Path) -> None:
    document = policy_for(load(tmp_path, STREAMS)).document()
    resources = {r for statement in document["Statement"] for r in statement["Resource"]}
    read = next(st for st in document["Statement"] if st["Sid"] == "ReadTheStream")
    assert "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/*" in read["Resource"]
    assert "arn:aws:kinesis:eu-west-1:123456789012:stream/payments-kds" in read["Resource"]
    assert {"kinesis:GetRecords", "dynamodb:GetRecords"} <= set(read["Action"])
    assert "arn:aws:dynamodb:us-east-1:123456789012:table/payments" in resources  # its keys


def test_the_docs_example_of_two_tables_in_one_worker_is_valid(tmp_path: Path) -> None:
    """The example in docs/configuration.md loads as it is written."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    section = page.split("### `[[streams]]`")[1].split("### `[checkpoints]`")[0]
    (example,) = re.findall(r"```toml\n(.*?)```", section, re.DOTALL)
    tomllib.loads(example)
    s = load(tmp_path, example + '\n[dead_letter]\npath = "dl.jsonl"\n')
    assert [name for name, _ in s.named_streams] == ["orders", "customers", "payments"]
    assert s.lease_namespace("payments") == "backend-side-effects/payments"
