"""The package's public API is explicit, sorted and importable."""

from __future__ import annotations

import pathlib
from importlib import metadata

import pytest

import processor
import processor.testing
import processor.webhooks


def test_all_is_sorted_and_every_name_exists() -> None:
    """__all__ lists the public names in order, and each one resolves."""
    for module in (processor, processor.testing, processor.webhooks):
        names = list(module.__all__)
        assert names == sorted(names, key=lambda n: (not n.isupper(), n))
        for name in names:
            assert hasattr(module, name), name


def test_consumers_use_only_the_public_api() -> None:
    """Built-in consumers import from `processor` itself (and its public modules: the webhook
    toolkit, `processor.webhooks`, and the retry policies, `processor.retries`), never its
    internals, and never botocore."""
    root = pathlib.Path(__file__).resolve().parents[2] / "consumers"
    for path in root.rglob("*.py"):
        for line in path.read_text().splitlines():
            public = line.startswith(
                ("from processor.webhooks import", "from processor.retries import")
            )
            if line.startswith(("from processor.", "import processor.")) and not public:
                raise AssertionError(f"{path.name}: {line}")
            # vendor errors are translated in processor's adapters (processor.dynamodb_table), once
            if line.startswith(("from botocore", "import botocore")):
                raise AssertionError(f"{path.name}: {line}")


# The public surface, written out: a rename or a removal here breaks users' code and must be a
# deliberate change of this list (and a CHANGELOG entry), never a side effect of moving modules.
PROCESSOR_ALL = {
    "THROTTLING_CODES", "BatchResult", "CircuitOpen", "ConfigError", "Consumer",
    "ConsumerContext", "ConsumerFactory", "DeadLetter", "DeadLetterSink",
    "DestinationNotAllowed", "Dispatcher", "EventName", "FilterPattern", "InvalidSignature",
    "IteratorExpiredError", "JsonlDeadLetterSink", "LeaseLostError", "ProcessorError",
    "RecordError", "RetryPolicy", "Route", "RouteStats", "ShutdownRequested", "StreamError",
    "StreamInfo", "StreamNotFoundError", "StreamRecord", "TransientError", "TrimmedDataError",
    "decode_image", "decode_value", "load_callable", "plain_image", "redact_text",
    "redact_url", "to_client_image", "translate_client_error",
}  # fmt: skip
#: the webhook toolkit (moved out of `processor` in 0.2.0; the old names warn until 0.3.0)
WEBHOOKS_ALL = {
    "CircuitBreaker", "CircuitOpen", "DestinationNotAllowed", "EgressPolicy", "FairScheduler",
    "InvalidSignature", "TokenBuckets", "check_url_template", "host_is_templated",
    "new_secret", "pinned_request", "secret_key", "signature_headers", "standard_headers",
    "verify",
}  # fmt: skip
TESTING_ALL = {
    "MemoryLeaseStore", "ReceivedRequest", "Scenario", "ShardSpec", "StreamDouble",
    "ThrottlingProxy", "WebhookReceiver", "create_table", "dynamodb_local", "make_record",
    "moto_server", "scan_all", "self_signed_certificate",
}  # fmt: skip
CLI_COMMANDS = {
    "run", "check-config", "replay", "capture", "status", "dead-letter", "multilang",
    "iam-policy",
}  # fmt: skip


def test_the_public_names_are_still_there() -> None:
    """Every name users import from `processor` and `processor.testing` still exists (new
    names may join)."""
    assert set(processor.__all__) >= PROCESSOR_ALL
    assert set(processor.testing.__all__) >= TESTING_ALL
    assert set(processor.webhooks.__all__) >= WEBHOOKS_ALL


def test_the_webhook_toolkit_left_processor_with_a_warning() -> None:
    """`processor.__all__` is the consumer contract, records, values, errors, tables and
    dead letters; the webhook toolkit's old names still resolve until 0.3.0, with a
    DeprecationWarning naming the new home."""
    toolkit = WEBHOOKS_ALL - {"CircuitOpen", "DestinationNotAllowed", "InvalidSignature"}
    assert not toolkit & set(processor.__all__)
    for name in sorted(toolkit):
        with pytest.warns(DeprecationWarning, match=f"processor.webhooks.{name}"):
            old = getattr(processor, name)
        assert old is getattr(processor.webhooks, name)


def test_the_entry_points_resolve() -> None:
    """`dsp`, the `dsp.consumers` entry points and the Lambda handler resolve to callables."""
    entry_points = metadata.entry_points()
    dsp = [e for e in entry_points.select(group="console_scripts") if e.name == "dsp"]
    assert [e.value for e in dsp] == ["processor.cli:main"]
    assert callable(dsp[0].load())
    consumers = {e.name: e for e in entry_points.select(group="dsp.consumers")}
    assert {"webhook", "batch_write", "cache"} <= set(consumers)
    for entry in consumers.values():
        assert callable(entry.load()), entry
    from processor.aws_lambda import handler  # noqa: PLC0415 - the documented import path

    assert callable(handler)


def test_the_cli_commands_are_still_there(capsys: pytest.CaptureFixture[str]) -> None:
    """`dsp` keeps every subcommand scripts and runbooks call (an unknown one exits 2)."""
    from processor.cli.parser import make_parser  # noqa: PLC0415

    for command in [*sorted(CLI_COMMANDS), "no-such-command"]:
        with pytest.raises(SystemExit) as exited:
            make_parser().parse_args([command, "--help"])
        assert exited.value.code == (2 if command == "no-such-command" else 0), command
    capsys.readouterr()


def test_every_public_exception_is_in_the_error_tree() -> None:
    """One error tree: every exception class a module of ours exports by name (not the
    private control-flow signals) derives from ProcessorError."""
    import importlib  # noqa: PLC0415
    import pkgutil  # noqa: PLC0415

    import consumers  # noqa: PLC0415

    outside = []
    for package in (processor, consumers):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".testing" in info.name or info.name.endswith("__main__"):
                continue  # test doubles answer with AWS's wire errors on purpose; __main__ runs
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if (
                    isinstance(value, type)
                    and issubclass(value, BaseException)
                    and value.__module__ == module.__name__
                    and not name.startswith("_")
                    and not issubclass(value, (processor.ProcessorError, processor.Signal))
                ):
                    outside.append(f"{module.__name__}.{name}")
    assert outside == []


def test_processor_testing_imports_without_the_test_extra() -> None:
    """The test servers ship in the wheel (ADR 0017) without pulling moto in at import."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = "import sys, processor.testing; print(sorted(m for m in sys.modules if m == 'moto'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
