"""The Lambda handler on event source mapping events (tests/events/)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processor import aws_lambda
from processor.errors import ConfigError
from processor.sinks.jsonl import read_dead_letters

from . import lambda_consumer

EVENTS = Path(__file__).resolve().parents[1] / "events"


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())  # type: ignore[no-any-return]


def seqs(ev: dict[str, Any], *indexes: int) -> list[str]:
    return [ev["Records"][i]["dynamodb"]["SequenceNumber"] for i in indexes]


@pytest.fixture
def dead_letters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "dl.jsonl"
    config = tmp_path / "lambda.toml"
    config.write_text(
        f"""
[dead_letter]
path = "{path}"
lambda_tmp = true  # pytest's tmp_path is under /tmp
[[routes]]
name = "steered"
consumer = "tests.unit.lambda_consumer:steered"
"""
    )
    monkeypatch.setenv("DSP_CONFIG", str(config))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    aws_lambda.reset()
    lambda_consumer.DELIVERED.clear()
    yield path
    aws_lambda.reset()


def test_success_reports_no_failures(dead_letters: Path) -> None:
    """A batch the consumer handles answers an empty batchItemFailures."""
    ev = event("esm_success")
    assert aws_lambda.handler(ev, None) == {"batchItemFailures": []}
    assert seqs(ev, 0, 1, 2, 3) == lambda_consumer.DELIVERED


def test_partial_failure_reports_each_failed_key_from_its_first_failure(dead_letters: Path) -> None:
    """Per key: the first failed record and all later records of that key are reported."""
    ev = event("esm_partial_failure")
    # keys: a a a a at 0,2,5,7; b at 1,3; c at 4,6. b fails at 1; a fails at 5; c's 4 is rejected.
    result = aws_lambda.handler(ev, None)
    assert result == {"batchItemFailures": [{"itemIdentifier": s} for s in seqs(ev, 1, 3, 5, 7)]}
    assert seqs(ev, 0, 2, 6) == lambda_consumer.DELIVERED
    (entry,) = read_dead_letters(dead_letters)
    assert entry.record == ev["Records"][4]  # rejected: stored whole, not reported
    assert entry.error_message == "HTTP 422"


def test_total_failure_reports_every_record(dead_letters: Path) -> None:
    """When the consumer raises, every record of the batch is reported."""
    ev = event("esm_total_failure")
    result = aws_lambda.handler(ev, None)
    assert result == {"batchItemFailures": [{"itemIdentifier": s} for s in seqs(ev, 0, 1, 2)]}
    assert not dead_letters.exists()


def test_repeated_event_ids_hide_no_failure(dead_letters: Path) -> None:
    """Records sharing an eventID (test events, replays) are each reported by sequence number."""
    ev = event("esm_total_failure")
    for record in ev["Records"]:
        record["eventID"] = "same-event-id"
    result = aws_lambda.handler(ev, None)
    assert result == {"batchItemFailures": [{"itemIdentifier": s} for s in seqs(ev, 0, 1, 2)]}


def test_malformed_records_are_dead_lettered_whole_not_reported(dead_letters: Path) -> None:
    """A record that cannot be parsed is stored whole with its reason; the rest is delivered."""
    ev = event("esm_malformed_record")
    assert aws_lambda.handler(ev, None) == {"batchItemFailures": []}
    (entry,) = read_dead_letters(dead_letters)
    assert entry.record == ev["Records"][1]
    assert entry.route == "-"


def test_a_record_whose_event_name_is_not_text_is_dead_lettered_not_raised(
    dead_letters: Path,
) -> None:
    """An eventName that is a list (nothing types the event Lambda hands over) is a malformed
    record like any other: stored whole with its reason while the rest is delivered. It once
    raised TypeError out of the handler, failing the whole batch on every retry."""
    ev = event("esm_success")
    ev["Records"][2]["eventName"] = ["MODIFY"]
    assert aws_lambda.handler(ev, None) == {"batchItemFailures": []}
    (entry,) = read_dead_letters(dead_letters)
    assert entry.record == ev["Records"][2]
    assert "eventName" in entry.error_message
    assert seqs(ev, 0, 1, 3) == lambda_consumer.DELIVERED


def test_empty_event_is_a_no_op(dead_letters: Path) -> None:
    """An event without records answers no failures and builds nothing."""
    assert aws_lambda.handler({"Records": []}, None) == {"batchItemFailures": []}


def test_the_lambda_clients_honour_the_configured_timeouts_and_endpoints(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[aws] connect/read timeouts and endpoints reach the Lambda path's boto3 clients, as they
    do the worker's (no call is made: botocore's client config is read back)."""
    monkeypatch.setenv("DSP_AWS__CONNECT_TIMEOUT_S", "1.5")
    monkeypatch.setenv("DSP_AWS__READ_TIMEOUT_S", "7")
    monkeypatch.setenv("DSP_AWS__STREAMS_ENDPOINT_URL", "http://127.0.0.1:9")
    runtime = aws_lambda._build(event("esm_success")["Records"][0])
    for client in (runtime.clients.dynamodb, runtime.clients.streams, runtime.clients.sqs):
        assert client.meta.config.connect_timeout == 1.5
        assert client.meta.config.read_timeout == 7
    assert runtime.clients.streams.meta.endpoint_url == "http://127.0.0.1:9"


def kinesis_seqs(ev: dict[str, Any], *indexes: int) -> list[str]:
    return [ev["Records"][i]["kinesis"]["sequenceNumber"] for i in indexes]


def test_a_kinesis_event_of_kds_records_reports_failures_by_kinesis_sequence_number(
    dead_letters: Path,
) -> None:
    """A Kinesis event source mapping on a table's KDS stream: the same eight changes as the
    DynamoDB partial-failure event give the same answer, by Kinesis sequence number; the
    rejected record is dead-lettered as the routes saw it (the KDS change, in the stream
    record shape, with its Kinesis sequence number), so `dsp dead-letter redrive` reads it."""
    ev = event("kinesis_kds_partial_failure")
    result = aws_lambda.handler(ev, None)
    assert result == {
        "batchItemFailures": [{"itemIdentifier": s} for s in kinesis_seqs(ev, 1, 3, 5, 7)]
    }
    assert kinesis_seqs(ev, 0, 2, 6) == lambda_consumer.DELIVERED
    (entry,) = read_dead_letters(dead_letters)
    assert entry.record["dynamodb"]["SequenceNumber"] == kinesis_seqs(ev, 4)[0]
    assert entry.record["eventID"] == event("esm_partial_failure")["Records"][4]["eventID"]
    assert entry.record["tableName"] == "orders"
    assert entry.error_message == "HTTP 422"


def test_a_kinesis_record_that_is_not_a_dynamodb_change_is_dead_lettered_whole(
    dead_letters: Path,
) -> None:
    """Data that is not a KDS payload is kept whole with the reason, never reported."""
    ev = event("kinesis_kds_partial_failure")
    ev["Records"] = ev["Records"][:1]
    ev["Records"][0]["kinesis"]["data"] = base64.b64encode(b"not json").decode()
    assert aws_lambda.handler(ev, None) == {"batchItemFailures": []}
    (entry,) = read_dead_letters(dead_letters)
    assert entry.record == ev["Records"][0]
    assert "not JSON" in entry.error_message


class FakeContext:
    """Lambda's context as far as the handler uses it: a budget on the monotonic clock."""

    def __init__(self, budget_s: float) -> None:
        self._deadline = time.monotonic() + budget_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def test_a_dead_letter_write_failing_mid_invocation_is_reported_before_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The destination breaks after the cold start; a rejected record cannot be stored. With
    3 s left, the handler stops retrying before Lambda's timeout and reports every record of
    the batch, the rejected one and the later records of its key included: none is reported
    as done. (On main it kept retrying the write past the timeout.)"""
    directory = tmp_path / "letters"
    directory.mkdir()
    config = tmp_path / "lambda.toml"
    config.write_text(
        f'[dead_letter]\npath = "{directory / "dl.jsonl"}"\nlambda_tmp = true\n'
        '[[routes]]\nname = "steered"\nconsumer = "tests.unit.lambda_consumer:steered"\n'
    )
    monkeypatch.setenv("DSP_CONFIG", str(config))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    aws_lambda.reset()
    try:
        assert aws_lambda.handler(event("esm_success"), FakeContext(3)) == {"batchItemFailures": []}
        directory.rmdir()
        directory.write_text("not a directory any more")  # every append now fails
        ev = event("esm_partial_failure")  # record 4 (key c) is rejected for good
        context = FakeContext(3)
        answers: list[dict[str, Any]] = []
        worker = threading.Thread(
            target=lambda: answers.append(aws_lambda.handler(ev, context)), daemon=True
        )
        worker.start()
        worker.join(timeout=10)  # bounds the test on main, where it never answered
        assert answers, "no answer: the handler was still retrying the dead-letter write"
        assert context.get_remaining_time_in_millis() > 0  # answered before Lambda's timeout
        reported = [f["itemIdentifier"] for f in answers[0]["batchItemFailures"]]
        assert reported == seqs(ev, *range(len(ev["Records"])))
    finally:
        aws_lambda.reset()


def test_a_budget_leaves_at_least_a_second_and_at_most_ten() -> None:
    """The margin kept back from Lambda's timeout: a tenth of the time left, 1 to 10 s."""
    assert aws_lambda.budget_margin_s(3) == 1.0
    assert aws_lambda.budget_margin_s(60) == 6.0
    assert aws_lambda.budget_margin_s(900) == 10.0


@pytest.mark.parametrize(
    ("dead_letter", "refused"),
    [
        ('path = "/tmp/dl.jsonl"', "in Lambda, /tmp is lost"),
        ('path = "/tmp/letters/dl.jsonl"', "dead_letter.lambda_tmp = true"),
        ('path = "{not_a_dir}/dl.jsonl"\nlambda_tmp = true', "cannot write the dead-letter file"),
    ],
)
def test_a_dead_letter_file_lambda_cannot_keep_is_refused_at_the_first_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead_letter: str, refused: str
) -> None:
    """/tmp without the opt-in, or a file that cannot be written: a ConfigError naming
    dead_letter.path at the first event, before any record is handled."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    config = tmp_path / "lambda.toml"
    config.write_text(
        f"[dead_letter]\n{dead_letter.format(not_a_dir=not_a_dir)}\n"
        '[[routes]]\nname = "steered"\nconsumer = "tests.unit.lambda_consumer:steered"\n'
    )
    monkeypatch.setenv("DSP_CONFIG", str(config))
    aws_lambda.reset()
    lambda_consumer.DELIVERED.clear()
    with pytest.raises(ConfigError) as caught:
        aws_lambda.handler(event("esm_success"), FakeContext(3))
    assert caught.value.key == "dead_letter.path"
    assert refused in str(caught.value)
    assert "\n" not in str(caught.value)
    assert lambda_consumer.DELIVERED == []
    aws_lambda.reset()


def test_emf_lines_follow_each_invocation(
    dead_letters: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With cloudwatch = "emf", each invocation writes its gains as EMF lines on stdout (the
    same writer as the container's): records by route and outcome, in the configured
    namespace."""
    monkeypatch.setenv("DSP_OBSERVABILITY__CLOUDWATCH", "emf")
    monkeypatch.setenv("DSP_OBSERVABILITY__CLOUDWATCH_NAMESPACE", "orders-fn")
    aws_lambda.reset()
    capsys.readouterr()
    aws_lambda.handler(event("esm_success"), FakeContext(3))
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    delivered = [
        d for d in documents if d.get("route") == "steered" and d.get("outcome") == "delivered"
    ]
    assert [d["dsp_records_total"] for d in delivered] == [4]
    assert {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in documents} == {"orders-fn"}
    aws_lambda.handler(event("esm_success"), FakeContext(3))
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [
        d["dsp_records_total"]
        for d in again
        if d.get("route") == "steered" and d.get("outcome") == "delivered"
    ] == [4]  # the gain of this invocation, not the total
