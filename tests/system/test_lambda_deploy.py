"""deploy/lambda: the SAM template checked by cfn-lint, its event source mapping by botocore's
model of CreateEventSourceMapping, and its FilterCriteria equal to `dsp lambda-filters` for
the configuration the package carries."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.session
from botocore.validate import ParamValidator
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
LAMBDA = ROOT / "deploy" / "lambda"
TEMPLATE = LAMBDA / "template.yaml"
STREAM_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:on-failure"


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def template() -> dict[str, Any]:
    decoded, matches = decode(str(TEMPLATE))
    assert not matches, matches
    assert decoded is not None
    return dict(decoded)


def stream_event(tpl: dict[str, Any]) -> dict[str, Any]:
    (event,) = tpl["Resources"]["Function"]["Properties"]["Events"].values()
    assert event["Type"] == "DynamoDB"
    return dict(event["Properties"])


def mapping_request(event: dict[str, Any]) -> dict[str, Any]:
    """The SAM event as the CreateEventSourceMapping call SAM turns it into: intrinsic
    functions resolved to example ARNs, SAM's own OnFailure.Type dropped."""
    request = {k: v for k, v in copy.deepcopy(event).items() if k != "Stream"}
    request["EventSourceArn"] = STREAM_ARN
    request["FunctionName"] = "dsp"
    on_failure = request.get("DestinationConfig", {}).get("OnFailure")
    if on_failure is not None:
        on_failure.pop("Type", None)
        on_failure["Destination"] = QUEUE_ARN
    return request


def api_errors(request: dict[str, Any]) -> list[str]:
    """botocore's validator for the call, and the enums its model declares."""
    model = botocore.session.get_session().get_service_model("lambda")
    shape = model.operation_model("CreateEventSourceMapping").input_shape
    assert shape is not None
    report = ParamValidator().validate(request, shape)
    errors = [str(report.generate_report())] if report.has_errors() else []
    for name, value in request.items():
        member = shape.members.get(name)
        if member is None:
            continue
        item_shape = getattr(member, "member", member)  # a list's items, or the value itself
        allowed = getattr(item_shape, "enum", None)
        for item in value if isinstance(value, list) else [value]:
            if allowed and item not in allowed:
                errors.append(f"{name}: {item!r} is not one of {allowed}")
    return errors


def test_cfn_lint_passes_the_template() -> None:
    """cfn-lint, with its SAM schemas, finds nothing."""
    done = cfn_lint(TEMPLATE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cfn_lint_names_a_broken_function_property(tmp_path: Path) -> None:
    """So the lint is not vacuous: a memory size below Lambda's minimum is named."""
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("MemorySize: 512", "MemorySize: 64"))
    done = cfn_lint(broken)
    assert done.returncode != 0
    assert "64 is less than the minimum of 128" in done.stdout


def test_the_mapping_is_a_valid_create_event_source_mapping() -> None:
    """What dsp needs from the mapping, as botocore's model of the call accepts it: partial
    batch responses, bisection, bounded retries, an SQS on-failure destination, filters."""
    event = stream_event(template())
    assert api_errors(mapping_request(event)) == []
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["BisectBatchOnFunctionError"] is True
    assert 0 <= event["MaximumRetryAttempts"] <= 10000
    assert event["DestinationConfig"]["OnFailure"]["Type"] == "SQS"


def test_a_broken_mapping_field_is_named() -> None:
    """A misspelt key and a value outside the API's enum are both reported."""
    request = mapping_request(stream_event(template()))
    request["StartingPositon"] = request.pop("StartingPosition")
    assert any('Unknown parameter in input: "StartingPositon"' in e for e in api_errors(request))
    request = mapping_request(stream_event(template()))
    request["FunctionResponseTypes"] = ["ReportBatchItemFailure"]
    assert any("'ReportBatchItemFailure' is not one of" in e for e in api_errors(request))


def test_the_filter_criteria_are_what_dsp_lambda_filters_prints() -> None:
    """The template's FilterCriteria come from the packaged lambda.toml's routes."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "processor.cli",
            "lambda-filters",
            "--config",
            str(LAMBDA / "lambda.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("DSP_")},
    )
    generated = json.loads(done.stdout)
    assert generated["Filters"], done.stderr
    assert stream_event(template())["FilterCriteria"] == generated


def test_the_function_uses_sqs_for_dead_letters_and_the_packaged_configuration() -> None:
    """DSP_CONFIG names the packaged file, the dead-letter queue comes from the template, and
    the time budget leaves dsp room to answer before Lambda's timeout."""
    function = template()["Resources"]["Function"]["Properties"]
    variables = function["Environment"]["Variables"]
    assert variables["DSP_CONFIG"] == "lambda.toml"
    assert variables["DSP_DEAD_LETTER__SQS_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}
    assert function["Handler"] == "processor.aws_lambda.handler"
    assert function["Timeout"] >= 10
