"""What a cold start imports: `import processor` and the Lambda handler module load only
what they use (PEP 562 names in `processor` and `processor.app`, AWS clients made on first
use), and the lazy names are exactly the public ones."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import processor
from processor.aws import make_clients
from processor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def imported_after(statement: str) -> set[str]:
    """The modules a fresh interpreter has imported after ``statement``."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(done.stdout.split())


def test_import_processor_imports_no_engine() -> None:
    modules = imported_after("import processor")
    assert not {m for m in modules if m.startswith("processor.")}
    assert "boto3" not in modules
    assert "structlog" not in modules


def test_the_lambda_handler_module_imports_neither_the_worker_nor_prometheus() -> None:
    modules = imported_after("from processor import aws_lambda")
    assert "processor.runtime.worker" not in modules
    assert "processor.app.build" not in modules
    assert "prometheus_client" not in modules  # only with cloudwatch = "emf"
    assert "boto3" not in modules  # about 80 ms: only with a client, or a binary value


def test_a_record_decodes_without_boto3_until_it_holds_a_binary_value() -> None:
    """Numbers need boto3's decimal context, not boto3 (a copy of it, checked below);
    Binary is boto3's class, imported at the first binary value."""
    decode = (
        "from processor.core.values import decode_image_json\n"
        'image = decode_image_json(b\'{{"n": {{"N": "1.5"}}, {}}}\')\n'
        "import sys\nprint('boto3' in sys.modules, type(image.get('b')).__name__)"
    )
    for extra, expected in (
        ('"s": {"S": "x"}', "False NoneType"),
        ('"b": {"B": "AAE="}', "True Binary"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", decode.format(extra)],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
        assert done.stdout.split() == expected.split()


def test_the_number_context_is_boto3s() -> None:
    from boto3.dynamodb.types import DYNAMODB_CONTEXT as BOTO3S  # noqa: PLC0415

    from processor.core.values import DYNAMODB_CONTEXT  # noqa: PLC0415

    assert (DYNAMODB_CONTEXT.prec, DYNAMODB_CONTEXT.Emin, DYNAMODB_CONTEXT.Emax) == (
        BOTO3S.prec, BOTO3S.Emin, BOTO3S.Emax,
    )  # fmt: skip
    assert DYNAMODB_CONTEXT.rounding == BOTO3S.rounding
    assert DYNAMODB_CONTEXT.traps == BOTO3S.traps
    assert DYNAMODB_CONTEXT.clamp == BOTO3S.clamp
    assert DYNAMODB_CONTEXT.capitals == BOTO3S.capitals


def test_lazy_names_are_the_public_names_imported_for_type_checkers() -> None:
    """processor._HOMES (where __getattr__ finds each name) matches the TYPE_CHECKING
    imports and __all__, so the names a type checker sees are the ones users get."""
    tree = ast.parse((ROOT / "processor" / "__init__.py").read_text())
    checked: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for item in node.body:
                assert isinstance(item, ast.ImportFrom)
                for alias in item.names:
                    checked[alias.name] = str(item.module)
    assert checked == processor._HOMES
    assert set(processor.__all__) == set(checked)
    assert processor.__version__  # from the installed metadata, on first use
    with pytest.raises(AttributeError):
        processor.NoSuchName  # noqa: B018


def test_clients_are_made_on_first_use_and_once() -> None:
    made: list[str] = []
    clients = make_clients(
        region="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        retry_mode="standard",
        max_attempts=1,
        pool_size=2,
    )
    original = clients._make

    def counting(service: str) -> object:
        made.append(service)
        return original(service)

    clients._make = counting
    assert made == []
    first = clients.dynamodb
    assert clients.dynamodb is first
    assert first.meta.endpoint_url == "http://127.0.0.1:9"
    assert made == ["dynamodb"]
    assert clients.streams.meta.service_model.service_name == "dynamodbstreams"
    assert made == ["dynamodb", "dynamodbstreams"]


def test_a_missing_profile_still_stops_the_start() -> None:
    with pytest.raises(ConfigError) as caught:
        make_clients(
            region="us-east-1",
            endpoint_url=None,
            profile="no-such-profile-anywhere",
            retry_mode="standard",
            max_attempts=1,
            pool_size=2,
        )
    assert caught.value.key == "aws.profile"
