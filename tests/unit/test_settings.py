"""Configuration: TOML + DSP_ environment, validated with errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from processor.app import worker_settings
from processor.aws import translate_client_error
from processor.errors import ConfigError
from processor.settings import load_settings

VALID = """
[stream]
table = "orders"
[checkpoints]
application = "orders-worker"
[[routes]]
name = "mirror"
consumer = "batch_write"
filter = '{"eventName": ["INSERT", "MODIFY", "REMOVE"]}'
[routes.options]
table = "orders_mirror"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dsp.toml"
    path.write_text(text)
    return path


def test_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    """A minimal file loads; everything else takes its documented default."""
    s = load_settings(write(tmp_path, VALID), environ={})
    assert s.only_stream.table == "orders"
    assert s.only_stream.starting_position == "TRIM_HORIZON"
    assert s.checkpoints.table == "dsp-leases"
    assert s.batch.max_records == 100
    assert s.routes[0].filters == ['{"eventName": ["INSERT", "MODIFY", "REMOVE"]}']
    assert s.dead_letter.path == "dead-letter.jsonl"


def test_the_shipped_config_files_are_valid() -> None:
    """config/demo.toml and the production example load as they are."""
    root = Path(__file__).resolve().parents[2] / "config"
    for name in ("demo.toml", "production.example.toml"):
        load_settings(root / name, environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    """DSP_SECTION__KEY beats the file; nested keys use double underscores."""
    s = load_settings(
        write(tmp_path, VALID),
        environ={
            "DSP_AWS__ENDPOINT_URL": "http://127.0.0.1:5000",
            "DSP_BATCH__MAX_RETRIES": "7",
            "DSP_STREAM__STARTING_POSITION": "LATEST",
        },
    )
    assert s.aws.endpoint_url == "http://127.0.0.1:5000"
    assert s.batch.max_retries == 7
    assert s.only_stream.starting_position == "LATEST"


def test_route_options_are_overridable_by_route_name(tmp_path: Path) -> None:
    """DSP_ROUTES__<NAME>__OPTIONS__<KEY> sets an option of the named route (secrets)."""
    s = load_settings(
        write(tmp_path, VALID), environ={"DSP_ROUTES__MIRROR__OPTIONS__TABLE": "other_mirror"}
    )
    assert s.routes[0].options["table"] == "other_mirror"


def test_routes_can_be_replaced_whole_with_json(tmp_path: Path) -> None:
    """DSP_ROUTES holds the whole route list as JSON."""
    s = load_settings(
        write(tmp_path, VALID),
        environ={
            "DSP_ROUTES": '[{"name": "hook", "consumer": "webhook", "options": {"url": "http://x"}}]'
        },
    )
    assert [r.name for r in s.routes] == ["hook"]


def config_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ=environ or {})
    return info.value


def test_unknown_consumer_names_the_key_and_the_valid_names(tmp_path: Path) -> None:
    """An unknown consumer is refused, listing the registered ones."""
    err = config_error(tmp_path, VALID.replace('consumer = "batch_write"', 'consumer = "kafka"'))
    assert err.key == "routes.0.consumer"
    assert err.value == "kafka"
    assert '"batch_write", "cache", "webhook"' in str(err)


def test_missing_stream_table_is_named(tmp_path: Path) -> None:
    """Without stream.table or stream.arn the error says which keys to set."""
    err = config_error(tmp_path, VALID.replace('table = "orders"\n', "", 1))
    assert err.key == "stream"
    assert "stream.table" in str(err)


def test_missing_application_is_named(tmp_path: Path) -> None:
    """A required key that is absent is reported as missing."""
    err = config_error(tmp_path, VALID.replace('application = "orders-worker"', ""))
    assert err.key == "checkpoints.application"
    assert "missing" in str(err)


def test_malformed_filter_json_is_quoted(tmp_path: Path) -> None:
    """A filter that is not valid JSON is refused, quoting it."""
    err = config_error(tmp_path, VALID.replace('["INSERT", "MODIFY", "REMOVE"]}', '["INSERT"'))
    assert err.key == "routes.0.filter"
    assert "not valid JSON" in str(err)
    assert '["INSERT"' in str(err)


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ('[batch]\nmax_records = "lots"', "batch.max_records"),
        ("[batch]\nmax_records = 0", "batch.max_records"),
        ("[batch]\nbisect_on_error = 3", "batch.bisect_on_error"),
        ('[stream2]\ntable = "x"', "stream2"),
        ('[aws]\nendpoint_url = "localhost:5000"', "aws.endpoint_url"),
        ("[checkpoints]\nlease_timeout_s = 10\nrenew_interval_s = 9", "checkpoints"),
    ],
)
def test_wrong_types_and_ranges_name_the_key(tmp_path: Path, snippet: str, key: str) -> None:
    """Wrong types, out-of-range values and unknown keys are refused, naming the key."""
    text = (
        VALID.replace("[checkpoints]\n", "[checkpoints]\n" + snippet.split("\n", 1)[1] + "\n")
        if snippet.startswith("[checkpoints]")
        else VALID + "\n" + snippet + "\n"
    )
    err = config_error(tmp_path, text)
    assert err.key == key


def test_wrong_type_from_the_environment_names_the_key_and_value(tmp_path: Path) -> None:
    """A bad value from an environment variable is reported with that value."""
    err = config_error(tmp_path, VALID, {"DSP_BATCH__MAX_RETRIES": "many"})
    assert err.key == "batch.max_retries"
    assert err.value == "many"


def test_unknown_environment_variables_are_refused(tmp_path: Path) -> None:
    """A misspelt DSP_ variable is an error, not silently ignored."""
    err = config_error(tmp_path, VALID, {"DSP_STRAEM__TABLE": "x"})
    assert err.key == "DSP_STRAEM__TABLE"
    err = config_error(tmp_path, VALID, {"DSP_ROUTES__NOPE__OPTIONS__URL": "x"})
    assert "no route named 'nope'" in str(err)


def test_duplicate_route_names_are_refused(tmp_path: Path) -> None:
    """Route names are unique (they address env overrides and dead letters)."""
    second = VALID[VALID.index("[[routes]]") :]
    err = config_error(tmp_path, VALID + second)
    assert "used twice" in str(err)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    """A missing file or invalid TOML is a ConfigError about --config."""
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[stream\n"), environ={})


def test_every_problem_is_listed(tmp_path: Path) -> None:
    """When several keys are wrong, each is reported."""
    text = VALID + '\n[batch]\nmax_records = "x"\nmax_retries = -5\n'
    message = str(config_error(tmp_path, text))
    assert "batch.max_records" in message
    assert "batch.max_retries" in message


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ("max_records = 10001", "batch.max_records", "between 1 and 10000"),
        ("max_window_ms = 300001", "batch.max_window_ms", "between 0 and 300000"),
        ("max_retries = -2", "batch.max_retries", "-1 or between 0 and 10000"),
        ("max_record_age_s = 59", "batch.max_record_age_s", "-1 or between 60 and 604800"),
        ("max_record_age_s = 604801", "batch.max_record_age_s", "-1 or between 60 and 604800"),
        ("parallelism = 0", "batch.parallelism", "between 1 and 10"),
        ("parallelism = 11", "batch.parallelism", "between 1 and 10"),
    ],
)
def test_lambda_controls_are_validated_with_their_ranges(
    tmp_path: Path, line: str, key: str, message: str
) -> None:
    """Each [batch] control outside Lambda's range names the key and the valid range."""
    err = config_error(tmp_path, VALID + f"\n[batch]\n{line}\n")
    assert err.key == key
    assert message in str(err)


def test_lambda_controls_accept_their_edges(tmp_path: Path) -> None:
    """-1 and the range ends are accepted."""
    s = load_settings(
        write(
            tmp_path,
            VALID + "\n[batch]\nmax_retries = -1\nmax_record_age_s = 60\n"
            "max_window_ms = 300000\nparallelism = 10\nmax_records = 10000\n",
        ),
        environ={},
    )
    assert (s.batch.max_retries, s.batch.max_record_age_s, s.batch.parallelism) == (-1, 60, 10)


def test_file_variables_hold_secrets(tmp_path: Path) -> None:
    """DSP_X_FILE=/path sets DSP_X to the file's content (Kubernetes/Docker secrets)."""
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    s = load_settings(
        write(tmp_path, VALID), environ={"DSP_ROUTES__MIRROR__OPTIONS__TABLE_FILE": str(secret)}
    )
    assert s.routes[0].options["table"] == "s3cr3t"
    err = config_error(tmp_path, VALID, {"DSP_BATCH__MAX_RETRIES_FILE": str(tmp_path / "nope")})
    assert err.key == "DSP_BATCH__MAX_RETRIES_FILE"
    assert "cannot read" in str(err)


def test_configuration_from_the_environment_alone() -> None:
    """Without a file, DSP_ variables carry the whole configuration (container images)."""
    s = load_settings(
        None,
        environ={
            "DSP_STREAM__TABLE": "orders",
            "DSP_CHECKPOINTS__APPLICATION": "app",
            "DSP_ROUTES": '[{"name": "m", "consumer": "batch_write", "options": {"table": "x"}}]',
        },
    )
    assert s.only_stream.table == "orders"
    assert s.routes[0].name == "m"


def test_the_botocore_pool_covers_batch_write_concurrency(tmp_path: Path) -> None:
    """Every batch_write call that may be in flight at once gets a connection: concurrency
    per route (default 4) times the key groups that may call it together."""
    from processor.app.build import _EXTRA_CONNECTIONS  # noqa: PLC0415
    from processor.app.routes import consumer_connections  # noqa: PLC0415

    text = VALID + (
        '[[routes]]\nname = "second"\nconsumer = "batch_write"\n'
        '[routes.options]\ntable = "other"\nconcurrency = 6\n'
        '[[routes]]\nname = "hook"\nconsumer = "webhook"\n[routes.options]\nurl = "http://x/"\n'
        "[batch]\nparallelism = 2\n"
    )
    settings = load_settings(write(tmp_path, text))
    assert consumer_connections(settings) == (4 + 6) * 2
    assert _EXTRA_CONNECTIONS > 0


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        ('source = "kinesis"', "needs stream.kinesis_stream"),
        (
            'source = "kinesis"\nkinesis_stream = "kds"\narn = "arn:aws:dynamodb:x"',
            "kinesis_stream",
        ),
        ('source = "kinesis"\nkinesis_stream = "kds"\npoll_interval_min_s = 0.1', "5 GetRecords"),
        ('source = "kafka"\nkinesis_stream = "kds"', "dynamodb"),
    ],
)
def test_a_kinesis_source_needs_its_stream_and_kinesis_pacing(
    tmp_path: Path, stream: str, message: str
) -> None:
    """[stream] source = "kinesis": the Kinesis stream is named, no DynamoDB stream ARN, and
    polling respects Kinesis' 5 reads per second per shard; each error names stream."""
    text = VALID.replace('[stream]\ntable = "orders"', f'[stream]\ntable = "orders"\n{stream}')
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(write(tmp_path, text))
    assert caught.value.key.startswith("stream")


def test_a_kinesis_source_loads(tmp_path: Path) -> None:
    """The Kinesis stream by name, the table for its key schema."""
    text = VALID.replace(
        '[stream]\ntable = "orders"',
        '[stream]\ntable = "orders"\nsource = "kinesis"\nkinesis_stream = "orders-kds"',
    )
    settings = load_settings(write(tmp_path, text))
    assert (settings.only_stream.source, settings.only_stream.kinesis_stream) == (
        "kinesis",
        "orders-kds",
    )


def test_an_idle_poll_interval_below_the_maximum_is_refused(tmp_path: Path) -> None:
    """The idle interval slows idle shards down further; below the ceiling it is an error
    naming the key. Set from the environment, it reaches the reader's settings."""
    err = config_error(tmp_path, VALID, {"DSP_STREAM__IDLE_POLL_INTERVAL_S": "1.5"})
    assert err.key.startswith("stream")
    assert "idle_poll_interval_s must be >= poll_interval_max_s" in str(err)
    s = load_settings(
        write(tmp_path, VALID),
        environ={"DSP_STREAM__IDLE_POLL_INTERVAL_S": "10", "DSP_STREAM__IDLE_AFTER_S": "30"},
    )
    assert (s.only_stream.idle_poll_interval_s, s.only_stream.idle_after_s) == (10.0, 30.0)


def test_quiet_shards_are_polled_every_10_s_by_default(tmp_path: Path) -> None:
    """The default idle interval (ADR 0030) reaches the reader; a poll_interval_max_s above it
    is no error (the default never polls faster than the ceiling), and set equal to the
    ceiling the idle interval changes nothing."""
    reader = worker_settings(load_settings(write(tmp_path, VALID))).reader
    assert (reader.idle_poll_interval_s, reader.idle_after_s) == (10.0, 60.0)
    slow = load_settings(write(tmp_path, VALID), environ={"DSP_STREAM__POLL_INTERVAL_MAX_S": "20"})
    assert worker_settings(slow).reader.idle_poll_interval_s == 20.0
    off = load_settings(write(tmp_path, VALID), environ={"DSP_STREAM__IDLE_POLL_INTERVAL_S": "2"})
    assert worker_settings(off).reader.idle_poll_interval_s == 2.0


def test_the_fast_path_is_on_unless_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`aws.fast_path` reaches the clients: a fast path for the streams client by default,
    none when it is false (every call through botocore)."""
    from processor.aws import clients_for  # noqa: PLC0415

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    endpoint = {"DSP_AWS__ENDPOINT_URL": "http://127.0.0.1:9"}
    on = load_settings(write(tmp_path, VALID), environ=endpoint)
    assert clients_for(on.aws, pool_size=1).fast("dynamodbstreams") is not None
    off = load_settings(write(tmp_path, VALID), environ={**endpoint, "DSP_AWS__FAST_PATH": "false"})
    assert clients_for(off.aws, pool_size=1).fast("dynamodbstreams") is None


def test_reader_threads_bound_the_pool_and_must_be_positive(tmp_path: Path) -> None:
    """`stream.reader_threads` reaches the worker; 0 is refused naming the key."""
    err = config_error(tmp_path, VALID, {"DSP_STREAM__READER_THREADS": "0"})
    assert err.key == "stream.reader_threads"
    settings = load_settings(write(tmp_path, VALID), environ={"DSP_STREAM__READER_THREADS": "8"})
    assert worker_settings(settings).reader_threads == 8
    assert worker_settings(load_settings(write(tmp_path, VALID))).reader_threads == 32


def test_vendor_errors_carry_a_fix_for_a_person() -> None:
    """The adapter names the likely fix of an unreachable endpoint, missing credentials and
    an access denial (botocore's own exception objects)."""
    unreachable = translate_client_error(
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"), "DescribeTable"
    )
    assert unreachable.fix is not None
    assert "http://127.0.0.1:9/" in unreachable.fix
    missing = translate_client_error(NoCredentialsError(), "DescribeTable")
    assert missing.fix is not None
    assert "AWS_PROFILE" in missing.fix
    denied = translate_client_error(
        ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Query"),
        "Query",
    )
    assert denied.fix is not None
    assert "dsp iam-policy" in denied.fix
    other = translate_client_error(
        ClientError({"Error": {"Code": "ValidationException", "Message": "x"}}, "Query"), "Query"
    )
    assert other.fix is None


@pytest.mark.parametrize(
    ("given", "epoch"),
    [
        ('"2026-12-01T00:00:00Z"', 1796083200.0),
        ('"2026-12-01T01:00:00+01:00"', 1796083200.0),
        ("1796083200", 1796083200.0),
        ("1796083200.5", 1796083200.5),
    ],
)
def test_at_timestamp_takes_rfc_3339_or_epoch_seconds(
    tmp_path: Path, given: str, epoch: float
) -> None:
    s = load_settings(
        write(
            tmp_path,
            VALID.replace(
                "[stream]\n",
                f'[stream]\nstarting_position = "AT_TIMESTAMP"\nstarting_timestamp = {given}\n',
            ),
        ),
        environ={},
    )
    assert worker_settings(s).starting_timestamp == epoch
    assert worker_settings(s).native_at_timestamp is False  # DynamoDB Streams: emulated


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        ('starting_position = "AT_TIMESTAMP"', "needs starting_timestamp"),
        (
            'starting_position = "AT_TIMESTAMP"\nstarting_timestamp = "2026-12-01T00:00:00"',
            "needs a zone",
        ),
        (
            'starting_position = "AT_TIMESTAMP"\nstarting_timestamp = "yesterday"',
            "neither RFC 3339",
        ),
        ('starting_timestamp = "2026-12-01T00:00:00Z"', "read only with starting_position"),
    ],
)
def test_at_timestamp_mistakes_name_the_key(tmp_path: Path, stream: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings(
            write(tmp_path, VALID.replace("[stream]\n", f"[stream]\n{stream}\n")), environ={}
        )
    assert "stream" in str(refused.value)
