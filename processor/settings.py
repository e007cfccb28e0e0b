"""Typed settings: one TOML file, every key overridable by a ``DSP_`` environment variable.

Precedence: command-line flag, then environment, then the TOML file, then the default.
Nested keys use ``__``: ``DSP_AWS__ENDPOINT_URL``, ``DSP_STREAM__TABLE``,
``DSP_BATCH__MAX_RETRIES``. A route's keys are addressed by its name:
``DSP_ROUTES__<NAME>__OPTIONS__SECRET`` (name upper-cased, ``-`` as ``_``). ``DSP_ROUTES``
replaces the whole list with JSON.

Every value is checked at start. Any problem raises :class:`~processor.errors.ConfigError`
naming the key, the value and what would be valid.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from processor.core.consumer import builtin_consumers
from processor.core.egress import check_http_url
from processor.core.routing import PatternError, compile_filters
from processor.errors import MISSING, ConfigError

__all__ = ["Settings", "load_settings"]

ENV_PREFIX = "DSP_"
#: DynamoDB's rule for table names (moto accepts more; DynamoDB and DynamoDB Local do not)
TableName = Annotated[str, Field(min_length=3, max_length=255, pattern=r"^[a-zA-Z0-9_.\-]+$")]
_CALLABLE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsSettings(_Section):
    region: str = "us-east-1"
    endpoint_url: str | None = None
    streams_endpoint_url: str | None = None  # default: endpoint_url
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("endpoint_url", "streams_endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_http_url(value)
        except ValueError as exc:
            raise ValueError(f"{exc}, e.g. http://127.0.0.1:5000") from None


class StreamSettings(_Section):
    table: TableName | None = None
    arn: str | None = None
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    get_records_limit: int = Field(default=1000, ge=1, le=1000)
    poll_interval_min_s: float = Field(default=0.25, gt=0, le=60)
    poll_interval_max_s: float = Field(default=2.0, gt=0, le=300)
    discovery_interval_s: float = Field(default=30.0, ge=1)
    describe_rate_per_s: float = Field(default=5.0, gt=0, le=10)  # DescribeStream limit: 10/s
    on_trimmed: Literal["fail", "skip"] = "fail"
    #: a reader that fails (AccessDenied, say) restarts after full-jitter exponential backoff
    reader_restart_base_s: float = Field(default=1.0, gt=0, le=60)
    reader_restart_max_s: float = Field(default=60.0, gt=0, le=3600)
    #: how coarse the source's ApproximateCreationDateTime is: 1 (AWS rounds down to the
    #: second), 60 for DynamoDB Local (to the minute); replays from a time allow for it
    timestamp_granularity_s: float = Field(default=1.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _one_source(self) -> StreamSettings:
        if not self.table and not self.arn:
            raise ValueError("set stream.table (the table whose stream to read) or stream.arn")
        if self.poll_interval_max_s < self.poll_interval_min_s:
            raise ValueError("poll_interval_max_s must be >= poll_interval_min_s")
        if self.reader_restart_max_s < self.reader_restart_base_s:
            raise ValueError("reader_restart_max_s must be >= reader_restart_base_s")
        return self


class CheckpointSettings(_Section):
    table: TableName = "dsp-leases"
    application: str = Field(min_length=1, pattern=r"^[\w.\-:]+$")
    owner: str | None = None  # default: hostname:pid
    lease_timeout_s: float = Field(default=30.0, ge=2)
    renew_interval_s: float = Field(default=10.0, gt=0)
    #: how often the lease table is scanned for free, expired or handed-off leases
    lease_scan_interval_s: float = Field(default=2.0, gt=0)
    max_leases: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _renew_faster_than_timeout(self) -> CheckpointSettings:
        if self.renew_interval_s * 2 > self.lease_timeout_s:
            raise ValueError("renew_interval_s must be at most half of lease_timeout_s")
        return self

    @property
    def owner_id(self) -> str:
        return self.owner or f"{socket.gethostname()}:{os.getpid()}"


class DeadLetterSettings(_Section):
    path: str | None = "dead-letter.jsonl"
    sqs_queue_url: str | None = None
    #: SQS's limit for one message and for one SendMessageBatch request (1 MiB); a letter
    #: larger than this goes whole to the file at ``path`` and the queue gets its location
    sqs_max_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024)


def _in_range(value: int, low: int, high: int, *, extra: str = "") -> int:
    if not low <= value <= high:
        raise ValueError(f"must be {extra}between {low} and {high}")
    return value


class BatchSettings(_Section):
    """Lambda event source mapping controls, with Lambda's names' meaning and ranges."""

    max_records: int = 100  # BatchSize
    max_window_ms: int = 0  # MaximumBatchingWindowInSeconds (in ms)
    max_retries: int = 3  # MaximumRetryAttempts; -1: until the record is too old
    max_record_age_s: int = -1  # MaximumRecordAgeInSeconds; -1: no limit
    bisect_on_error: bool = True  # BisectBatchOnFunctionError
    parallelism: int = 1  # ParallelizationFactor (concurrent key groups per batch)
    retry_base_delay_s: float = Field(default=0.2, gt=0)
    retry_max_delay_s: float = Field(default=20.0, gt=0)

    @field_validator("max_records")
    @classmethod
    def _records(cls, value: int) -> int:
        return _in_range(value, 1, 10000)

    @field_validator("max_window_ms")
    @classmethod
    def _window(cls, value: int) -> int:
        return _in_range(value, 0, 300000)

    @field_validator("max_retries")
    @classmethod
    def _retries(cls, value: int) -> int:
        return value if value == -1 else _in_range(value, 0, 10000, extra="-1 or ")

    @field_validator("max_record_age_s")
    @classmethod
    def _age(cls, value: int) -> int:
        return value if value == -1 else _in_range(value, 60, 604800, extra="-1 or ")

    @field_validator("parallelism")
    @classmethod
    def _parallelism(cls, value: int) -> int:
        return _in_range(value, 1, 10)


class HttpSettings(_Section):
    pool_size: int = Field(default=10, ge=1, le=1000)
    ca_bundle: str | None = None  # PEM file of CAs to trust (default: the system's)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    read_timeout_s: float = Field(default=10.0, gt=0)
    #: networks that tenant-supplied webhook URLs may reach although not public, e.g.
    #: ["10.1.0.0/16"]; each admits exactly its own addresses (no IPv4-mapped forms)
    allowed_networks: list[str] = Field(default_factory=list)
    #: check operator-written URLs (the TOML file) against the destination policy too
    guard_operator_urls: bool = False
    #: refuse plain-http tenant URLs
    tenant_https_only: bool = False

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text)
            except ValueError as exc:
                raise ValueError(
                    f'{text!r} is not a network such as "10.1.0.0/16" or "fd00:1::/64" ({exc})'
                ) from None
        return value


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class ObservabilitySettings(_Section):
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # off unless set
    host: str = "0.0.0.0"  # noqa: S104 - probes and scrapers reach the pod from outside
    ready_max_stall_s: float = Field(default=60.0, gt=0)
    #: tenants with a label of their own in dsp_tenant_records_total (the rest: "other")
    max_tenant_labels: int = Field(default=100, ge=0, le=10_000)


class TenancySettings(_Section):
    attribute: str = "pk"
    pattern: str = r"^TENANT#(?P<tenant>[^#]+)"
    #: records whose key does not match: deliver them (tenant None), drop them, or dead-letter
    missing: Literal["process", "skip", "dead_letter"] = "process"

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if "tenant" not in compiled.groupindex:
            raise ValueError("must have a named group (?P<tenant>...)")
        return value


class ShutdownSettings(_Section):
    deadline_s: float = Field(default=30.0, gt=0)


class MultiLangSettings(_Section):
    """KCL MultiLang mode (`dsp multilang`): each owned shard drives one child process that
    runs an unchanged amazon_kclpy record processor, instead of the routes."""

    #: the child's command line, split on spaces (no shell), as KCL's ``executableName``
    executable: str = Field(min_length=1)
    #: ``shutdownGraceMillis``: how long a child may take to answer ``shutdownRequested``
    #: (and checkpoint) on SIGTERM or a hand-off; KCL's default 0 skips the request
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    #: ``timeoutInSeconds``: a child that does not answer a message in time is killed and
    #: restarted (KCL halts the whole JVM); none: wait as long as it takes
    timeout_s: float | None = Field(default=None, gt=0)
    #: ``callProcessRecordsEvenForEmptyRecordList``
    call_process_records_even_for_empty: bool = False
    #: the child's working directory (default: dsp's)
    cwd: str | None = None


def _refuse_numeric_on_n(source: str) -> None:
    """A ``numeric`` matcher on an N value can never match under AWS's rules: say so."""

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{path}.{key}" if path else key
                numeric = isinstance(value, list) and any(
                    isinstance(v, dict) and "numeric" in v for v in value
                )
                if key in ("N", "NS") and numeric:
                    raise PatternError(
                        "numeric never matches a DynamoDB N value in AWS (N values are "
                        "strings); set filter_extensions = true on this route to compare "
                        "them as numbers",
                        path=here,
                    )
                walk(value, here)
        elif isinstance(node, list):
            for item in node:
                walk(item, path)

    walk(json.loads(source), "")


class RouteSettings(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    consumer: str
    #: opt-in extensions to AWS's filter language (``numeric`` compares N values); declared
    #: before ``filter`` so that the filter's validator sees it
    filter_extensions: bool = False
    filter: str | list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("consumer")
    @classmethod
    def _known_consumer(cls, value: str) -> str:
        names = builtin_consumers()
        if value in names or _CALLABLE_SPEC.match(value):
            return value
        valid = ", ".join(f'"{n}"' for n in sorted(names))
        raise ValueError(f'unknown consumer; valid: {valid}, or "package.module:callable"')

    @field_validator("filter")
    @classmethod
    def _valid_filter(
        cls, value: str | list[str] | None, info: ValidationInfo
    ) -> str | list[str] | None:
        if value is None:
            return None
        sources = [value] if isinstance(value, str) else value
        extensions = bool(info.data.get("filter_extensions"))
        try:
            compile_filters(sources, extensions=extensions)
            if not extensions:
                for source in sources:
                    _refuse_numeric_on_n(source)
        except PatternError as exc:
            route = json.dumps(info.data.get("name", "?"))
            raise ValueError(f"route {route}: malformed filter pattern: {exc}") from None
        return value

    @property
    def filters(self) -> list[str]:
        if self.filter is None:
            return []
        return [self.filter] if isinstance(self.filter, str) else list(self.filter)


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    aws: AwsSettings = AwsSettings()
    stream: StreamSettings
    checkpoints: CheckpointSettings
    dead_letter: DeadLetterSettings = DeadLetterSettings()
    batch: BatchSettings = BatchSettings()
    http: HttpSettings = HttpSettings()
    logging: LoggingSettings = LoggingSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    tenancy: TenancySettings = TenancySettings()
    routes: list[RouteSettings] = Field(default_factory=list)
    multilang: MultiLangSettings | None = None

    @model_validator(mode="after")
    def _unique_routes(self) -> Settings:
        if self.multilang is None and not self.routes:
            raise ValueError(
                "routes: add at least one [[routes]] entry (or a [multilang] section, whose "
                "child processes take the records instead)"
            )
        if self.multilang is not None and self.routes:
            raise ValueError(
                "routes: [multilang] hands every record to its child processes; remove the "
                "[[routes]] entries or the [multilang] section"
            )
        seen: set[str] = set()
        for route in self.routes:
            if route.name in seen:
                raise ValueError(f"route name {route.name!r} is used twice; names must be unique")
            seen.add(route.name)
        if not self.dead_letter.path and not self.dead_letter.sqs_queue_url:
            raise ValueError("set dead_letter.path or dead_letter.sqs_queue_url")
        return self


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


def _route_env_overrides(routes: list[Any], environ: Mapping[str, str]) -> list[Any]:
    """Apply ``DSP_ROUTES__<NAME>__KEY[__SUBKEY]`` variables to the route of that name."""
    prefix = f"{ENV_PREFIX}ROUTES__"
    by_env_name = {
        str(r.get("name", "")).upper().replace("-", "_"): r for r in routes if isinstance(r, dict)
    }
    for var, raw in environ.items():
        if not var.upper().startswith(prefix):
            continue
        name, _, rest = var[len(prefix) :].partition("__")
        route = by_env_name.get(name.upper())
        if route is None or not rest:
            raise ConfigError(var, raw, f"no route named {name.lower()!r} in the configuration")
        path = [p.lower() for p in rest.split("__")]
        target = route
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = _env_value(raw)
    return routes


def _env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _config_errors(exc: ValidationError) -> ConfigError:
    """One ConfigError naming the first bad key; every other problem on its own line."""
    problems: list[ConfigError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input", MISSING)
        if err["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling against config/defaults.toml"
        elif err["type"] == "missing":
            msg, value = "required key is missing", MISSING
        problems.append(ConfigError(_format_loc(loc) or "<root>", value, msg))
    first = problems[0]
    if len(problems) > 1:
        more = "\n".join(f"  also: {p}" for p in problems[1:])
        return ConfigError(first.key, first.value, f"{first.reason}\n{more}")
    return first


def _read_file_variables(environ: dict[str, str]) -> dict[str, str]:
    """``DSP_X_FILE=/path`` sets ``DSP_X`` to the file's content (Docker/Kubernetes secrets)."""
    out = dict(environ)
    for var, path in environ.items():
        upper = var.upper()
        if (
            upper.startswith(ENV_PREFIX)
            and upper.endswith("_FILE")
            and upper != f"{ENV_PREFIX}CONFIG"
        ):
            target = var[: -len("_FILE")]
            try:
                out[target] = Path(path).read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                raise ConfigError(var, path, f"cannot read the file: {exc.strerror}") from None
            del out[var]
    return out


def _check_env_names(environ: Mapping[str, str]) -> None:
    sections = {name.upper() for name in Settings.model_fields}
    for var, value in environ.items():
        upper = var.upper()
        # DSP_TEST_*: the test suite's own switches (backend, Redis URL), never settings
        if not upper.startswith(ENV_PREFIX) or upper.startswith(f"{ENV_PREFIX}TEST_"):
            continue
        if upper == f"{ENV_PREFIX}CONFIG":
            continue
        section = upper[len(ENV_PREFIX) :].split("__", 1)[0]
        if section not in sections:
            valid = ", ".join(f"{ENV_PREFIX}{s}__..." for s in sorted(sections))
            raise ConfigError(var, value, f"unknown setting; valid prefixes: {valid}")


def load_settings(
    path: str | Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Read the TOML file, apply ``DSP_`` variables and ``overrides``, validate everything.

    ``defaults`` fill sections' keys the file does not set (below the file in precedence).
    """
    env = _read_file_variables(dict(os.environ if environ is None else environ))
    _check_env_names(env)
    data: dict[str, Any] = {}
    if path is not None and str(path) != "":
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("--config", str(file), "file not found") from None
        except OSError as exc:
            raise ConfigError("--config", str(file), f"cannot read it: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", str(file), f"not valid TOML: {exc}") from None
    for section, values in (defaults or {}).items():
        current = data.get(section)
        data[section] = {**values, **(current if isinstance(current, dict) else {})}
    if f"{ENV_PREFIX}ROUTES" in {k.upper() for k in env}:
        raw_routes = next(v for k, v in env.items() if k.upper() == f"{ENV_PREFIX}ROUTES")
        data["routes"] = _env_value(raw_routes)
        env = {k: v for k, v in env.items() if k.upper() != f"{ENV_PREFIX}ROUTES"}
    if isinstance(data.get("routes"), list):
        data["routes"] = _route_env_overrides(data["routes"], env)
    route_vars = {k for k in env if k.upper().startswith(f"{ENV_PREFIX}ROUTES__")}
    env = {k: v for k, v in env.items() if k not in route_vars}

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            env_source = EnvSettingsSource(
                settings_cls,
                env_prefix=ENV_PREFIX,
                env_nested_delimiter="__",
                case_sensitive=False,
            )
            env_source.env_vars = {k.lower(): v for k, v in env.items()}
            return (init_settings, env_source, _TomlSource(settings_cls, data))

    try:
        loaded = _Loaded(**dict(overrides or {}))
    except ValidationError as exc:
        raise _config_errors(exc) from None
    return loaded
