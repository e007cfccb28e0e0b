"""Bad configuration stops `dsp run` with exit status 2 and a message naming the key."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from processor.cli.parser import make_parser
from processor.testing import create_table

BASE = """
[stream]
table = "{source}"
[checkpoints]
table = "leases-{unique}"
application = "cfg-{unique}"
[[routes]]
name = "r"
consumer = "{consumer}"
{filter}
[routes.options]
{options}
"""


def run_dsp(
    tmp_path: Path, endpoint: str, text: str, *args: str
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "dsp.toml"
    config.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config), *args],
        env={**os.environ, "DSP_AWS__ENDPOINT_URL": endpoint},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def source(dynamodb: Any, unique: str) -> str:
    name = f"src-{unique}"
    create_table(dynamodb, name)
    create_table(dynamodb, f"dst-{unique}", stream_view=None)
    return name


def config(
    source: str,
    unique: str,
    *,
    consumer: str = "batch_write",
    filter: str = "",
    options: str | None = None,
) -> str:
    opts = f'table = "dst-{unique}"' if options is None else options
    return BASE.format(source=source, unique=unique, consumer=consumer, filter=filter, options=opts)


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"consumer": "kafka"}, "routes.0.consumer", "unknown consumer"),
        ({"consumer": "no_such_module:handler"}, "routes.0.consumer", "cannot import"),
        ({"filter": 'filter = \'{"eventName": ["INSERT"\''}, "routes.0.filter", "not valid JSON"),
        (
            {"options": 'table = "dst"\nmax_attempts = "many"'},
            "routes.0.options.max_attempts",
            "integer",
        ),
        ({"options": 'tabel = "dst"'}, "routes.0.options.table", "missing"),
        ({"options": 'table = "does-not-exist"'}, "routes.0.options.table", "no such table"),
        (
            {"consumer": "cache", "options": 'keys = ["order:{customer}"]'},
            "routes.0.options.keys.0",
            "{pk}, {sk}",
        ),
        (
            {"consumer": "webhook", "options": 'url = "ftp://example"'},
            "routes.0.options.url",
            "http",
        ),
    ],
)
def test_bad_route_configuration_exits_2_naming_the_key(
    tmp_path: Path,
    endpoint: str,
    dynamodb: Any,
    source: str,
    unique: str,
    change: dict[str, str],
    key: str,
    words: str,
) -> None:
    """Each kind of bad route configuration exits 2 naming the key; no lease table is created."""
    result = run_dsp(tmp_path, endpoint, config(source, unique, **change))
    assert result.returncode == 2, result.stderr
    assert f"configuration error: {key} = " in result.stderr
    assert words in result.stderr
    with pytest.raises(dynamodb.exceptions.ResourceNotFoundException):  # no lease table made
        dynamodb.describe_table(TableName=f"leases-{unique}")


def test_missing_source_table_exits_2_naming_stream_table(
    tmp_path: Path, endpoint: str, unique: str
) -> None:
    """A stream.table that does not exist at the endpoint is a configuration error."""
    result = run_dsp(tmp_path, endpoint, config(f"nope-{unique}", unique))
    assert result.returncode == 2
    assert f"stream.table = 'nope-{unique}': no such table" in result.stderr


def test_table_without_stream_exits_2(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """A source table with no stream enabled is refused with the fix."""
    create_table(dynamodb, f"nostream-{unique}", stream_view=None)
    result = run_dsp(tmp_path, endpoint, config(f"nostream-{unique}", unique))
    assert result.returncode == 2
    assert "no stream enabled" in result.stderr


def test_batch_write_on_a_keys_only_stream_exits_2(
    tmp_path: Path, endpoint: str, dynamodb: Any, unique: str
) -> None:
    """batch_write needs new images: a KEYS_ONLY stream is a configuration error."""
    create_table(dynamodb, f"keys-{unique}", stream_view="KEYS_ONLY")
    create_table(dynamodb, f"dst-{unique}", stream_view=None)
    result = run_dsp(tmp_path, endpoint, config(f"keys-{unique}", unique))
    assert result.returncode == 2
    assert "routes.0.consumer = 'batch_write'" in result.stderr
    assert "KEYS_ONLY" in result.stderr


def test_wrong_types_in_the_file_and_environment_exit_2(
    tmp_path: Path, endpoint: str, source: str, unique: str
) -> None:
    """Type errors from the file or from DSP_ variables exit 2 naming the key."""
    text = config(source, unique) + '\n[batch]\nmax_records = "lots"\n'
    result = run_dsp(tmp_path, endpoint, text)
    assert result.returncode == 2
    assert "batch.max_records = 'lots'" in result.stderr


def check_config(
    tmp_path: Path, endpoint: str | None, text: str, *args: str
) -> subprocess.CompletedProcess[str]:
    config_file = tmp_path / "check.toml"
    config_file.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if endpoint is not None:
        env.update(os.environ)
        env["DSP_AWS__ENDPOINT_URL"] = endpoint
    else:  # no endpoint and no credentials: any AWS call would fail
        env["DSP_AWS__ENDPOINT_URL"] = "http://127.0.0.1:9"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "processor.cli",
            "check-config",
            "--config",
            str(config_file),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_offline_validates_without_touching_aws(tmp_path: Path) -> None:
    """`dsp check-config --offline` validates without AWS and says what it could not check."""
    ok = check_config(tmp_path, None, config("orders", "x"), "--offline")
    assert ok.returncode == 0, ok.stderr
    assert "ok (1 routes; not checked offline: the stream" in ok.stdout


def _error_line(stderr: str) -> str:
    (line,) = [x for x in stderr.splitlines() if "configuration error:" in x]
    return line[line.index("configuration error") :]


#: Bad configurations that `dsp run` rejects (issue 15, item 7): check-config used to accept
#: all but the filter; offline=True marks those it can catch without AWS.
RUN_REJECTS = [
    ({"consumer": "webhook", "options": 'url = "ftp://example"'}, True),
    ({"consumer": "webhook", "options": 'urll = "https://example.com/h"'}, True),
    ({"consumer": "webhook", "options": 'url = "https://{tenat}.example.com/h"'}, True),
    ({"consumer": "no_such_module:handler"}, True),
    ({"consumer": "processor.core.records:no_such_attribute"}, True),
    ({"options": 'table = "dst"\nmax_attempts = "many"'}, True),
    ({"options": 'table = "dst"\ntransform = "no_such_module:fn"'}, True),
    ({"options": 'table = "does-not-exist"'}, False),
    ({"consumer": "cache", "options": 'keys = ["order:{customer}"]'}, False),
    ({"consumer": "cache", "options": 'keys = ["order:{pk"]'}, True),
    ({"consumer": "webhook", "options": 'subscriptions_table = "no-such-subs"'}, False),
]


@pytest.mark.parametrize(("change", "offline"), RUN_REJECTS)
def test_check_config_rejects_what_run_rejects_with_the_same_message(
    tmp_path: Path,
    endpoint: str,
    source: str,
    unique: str,
    change: dict[str, str],
    offline: bool,
) -> None:
    text = config(source, unique, **change)
    run = run_dsp(tmp_path, endpoint, text)
    assert run.returncode == 2, run.stderr
    check = check_config(tmp_path, endpoint, text)
    assert check.returncode == 2, check.stdout
    assert _error_line(check.stderr) == _error_line(run.stderr)
    if offline:
        quick = check_config(tmp_path, None, text, "--offline")
        assert quick.returncode == 2, quick.stdout
        assert _error_line(quick.stderr) == _error_line(run.stderr)


def test_check_config_accepts_a_good_configuration_online(
    tmp_path: Path, endpoint: str, source: str, unique: str
) -> None:
    ok = check_config(tmp_path, endpoint, config(source, unique))
    assert ok.returncode == 0, ok.stderr
    assert f"ok (1 routes; stream of table {source} resolved" in ok.stdout


@pytest.mark.parametrize(
    ("filter_line", "words"),
    [
        ('filter = \'{"a": [{"numeric": [">", 10, "<", 5]}]}\'', "lower bound must be less"),
        ('filter = \'{"a": [{"anything-but": []}]}\'', "anything-but takes"),
        (
            'filter = \'{"a": [1], "a": [2]}\'',
            'the field "a" is constrained twice; give its values as one list: {"a": [1, 2]}',
        ),
        ('filter = \'{"a": [{"wildcard": "x**"}]}\'', "consecutive wildcard"),
        ('filter = \'{"a": [{"prefixx": "x"}]}\'', "unknown operator"),
        (
            'filter = \'{"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 1]}]}}}}\'',
            "filter_extensions = true",
        ),
    ],
)
def test_bad_filter_stops_run_and_check_config_with_one_message(
    tmp_path: Path, endpoint: str, source: str, unique: str, filter_line: str, words: str
) -> None:
    """An invalid filter stops `dsp run` and fails `dsp check-config` with the same message."""
    text = config(source, unique, filter=filter_line)
    run = run_dsp(tmp_path, endpoint, text)
    check = check_config(tmp_path, None, text, "--offline")
    assert run.returncode == check.returncode == 2, (run.stderr, check.stderr)

    def message(stderr: str) -> str:
        (line,) = [x for x in stderr.splitlines() if "configuration error: routes.0.filter" in x]
        return line[line.index("configuration error") :]

    assert message(run.stderr) == message(check.stderr)
    assert 'route "r": malformed filter pattern' in message(run.stderr)
    assert words in message(run.stderr)


def test_filter_extensions_admit_numeric_on_n_values(tmp_path: Path) -> None:
    """With filter_extensions = true, numeric on an N value is a valid route filter."""
    config_file = tmp_path / "ext.toml"
    pattern = '{"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 1]}]}}}}'
    line = f"filter_extensions = true\nfilter = '{pattern}'"
    config_file.write_text(config("orders", "x", filter=line))
    ok = check_config(tmp_path, None, config_file.read_text(), "--offline")
    assert ok.returncode == 0, ok.stderr


UNREACHABLE = """
[aws]
endpoint_url = "http://127.0.0.1:9"
max_attempts = 1
connect_timeout_s = 1
[stream]
table = "orders"
[checkpoints]
application = "one-line"
[[routes]]
name = "m"
consumer = "batch_write"
[routes.options]
table = "mirror"
"""


def _check_config(
    tmp_path: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "dsp.toml"
    path.write_text(UNREACHABLE)
    return subprocess.run(
        [sys.executable, "-m", "processor.cli", "check-config", "--config", str(path), *args],
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DSP_"))} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_unreachable_endpoint_is_one_line_with_the_fix_and_exit_2(tmp_path: Path) -> None:
    """Nothing answers at the endpoint: one line naming the call, the endpoint and the fix,
    exit 2 as documented (on main: exit 1 and a 6.7 KB JSON traceback)."""
    done = _check_config(tmp_path, {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("dsp check-config: DescribeTable: Could not connect")
    assert "nothing answered at http://127.0.0.1:9/: check aws.endpoint_url" in line


def test_missing_credentials_are_one_line_with_the_fix(tmp_path: Path) -> None:
    """No credentials anywhere (no variables, no files, no instance metadata): one line."""
    done = _check_config(
        tmp_path,
        {
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
        },
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "Unable to locate credentials; no AWS credentials were found" in line


def test_the_traceback_is_there_at_debug_and_log_levels_ignore_case(tmp_path: Path) -> None:
    """`--log-level debug` is accepted, and at DEBUG the traceback is logged too."""
    done = _check_config(
        tmp_path, {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}, "--log-level", "debug",
        "--log-format", "json",
    )  # fmt: skip
    assert done.returncode == 2
    assert '"run_failed"' in done.stderr
    assert "Traceback" in done.stderr


def test_check_config_json_for_scripts(tmp_path: Path) -> None:
    """--json: one object on stdout, for success, a bad key and an unreachable endpoint."""
    ok = check_config(tmp_path, None, config("orders", "x"), "--offline", "--json")
    assert ok.returncode == 0, ok.stderr
    answer = json.loads(ok.stdout)
    assert answer["ok"] is True
    assert answer["summary"].startswith("ok (1 routes; not checked offline")
    broken = config("orders", "x").replace(
        'table = "orders"\n', 'table = "orders"\npoll_interval_min_s = -1\n', 1
    )
    bad = check_config(tmp_path, None, broken, "--offline", "--json")
    assert bad.returncode == 2
    failed = json.loads(bad.stdout)
    assert failed["ok"] is False
    assert failed["key"].startswith("stream")
    unreachable = _check_config(
        tmp_path, {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}, "--json"
    )
    assert unreachable.returncode == 2
    gone = json.loads(unreachable.stdout)
    assert gone["ok"] is False
    assert "check aws.endpoint_url" in gone["fix"]


def test_every_help_lists_its_exit_statuses() -> None:
    """`dsp --help` and every `dsp COMMAND [SUBCOMMAND] --help` end with their exit codes."""
    pending = [make_parser()]
    seen = 0
    while pending:
        parser = pending.pop()
        seen += 1
        assert "exit status: 0 " in parser.format_help(), parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    assert seen >= 16


def test_iam_policy_json_carries_the_notes(tmp_path: Path) -> None:
    """--json: the policy and its notes in one object (the notes are otherwise on stderr)."""
    path = tmp_path / "dsp.toml"
    path.write_text(
        config("orders", "x", consumer="tests.integration.transforms:collect", options="")
    )
    done = subprocess.run(
        [sys.executable, "-m", "processor.cli", "iam-policy", "--json", "--config", str(path),
         "--account", "123456789012"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["policy"]["Version"] == "2012-10-17"
    assert any("tests.integration.transforms:collect" in note for note in answer["notes"])
    assert done.stderr == ""


def test_the_readmes_quickstart_configuration_is_valid(tmp_path: Path) -> None:
    """The README's ten-line quickstart: its TOML passes check-config (offline)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    toml = readme.split("cat > worker.toml <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    done = check_config(tmp_path, None, toml, "--offline")
    assert done.returncode == 0, done.stderr
    assert "ok (1 routes" in done.stdout
