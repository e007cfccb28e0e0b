"""Reading the configuration: the TOML file, then DSP_ environment variables (and _FILE
variables for secrets), validated into Settings; errors name the key and the fix."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from processor.errors import MISSING, ConfigError
from processor.settings.routes import RouteSettings
from processor.settings.sections import (
    DEFAULT_STREAM,
    ENV_PREFIX,
    AwsSettings,
    BatchSettings,
    CheckpointSettings,
    DeadLetterSettings,
    HttpSettings,
    LoggingSettings,
    MultiLangSettings,
    NamedStreamSettings,
    ObservabilitySettings,
    ShutdownSettings,
    StreamSettings,
    TenancySettings,
)
from processor.settings.service_links import is_service_link

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    aws: AwsSettings = AwsSettings()
    #: the one stream this worker reads; or ``streams``, several (exactly one of the two)
    stream: StreamSettings | None = None
    streams: list[NamedStreamSettings] = Field(default_factory=list)
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
    #: DSP_ variables skipped as Kubernetes service links (logged at DEBUG by the caller)
    _service_links: tuple[str, ...] = PrivateAttr(default=())

    @property
    def ignored_variables(self) -> tuple[str, ...]:
        """The ``DSP_`` variables that were Kubernetes service links, not settings."""
        return self._service_links

    @property
    def named_streams(self) -> list[tuple[str, StreamSettings]]:
        """Every stream this configuration reads, with its name (``[stream]``: "default")."""
        if self.stream is not None:
            return [(DEFAULT_STREAM, self.stream)]
        return [(entry.name, entry) for entry in self.streams]

    @property
    def only_stream(self) -> StreamSettings:
        """The stream of a configuration that reads one; ConfigError naming ``streams`` for
        one that reads several (a command that handles one stream at a time)."""
        named = self.named_streams
        if len(named) != 1:
            names = ", ".join(name for name, _ in named)
            raise ConfigError(
                "streams",
                names,
                "this handles one stream; choose one with --stream, or use a configuration "
                "with a single [stream]",
            )
        return named[0][1]

    def lease_namespace(self, stream: str, application: str | None = None) -> str:
        """The application key of ``stream``'s leases in the lease table: the application for
        ``default`` (a single ``[stream]``), ``<application>/<stream>`` for the others."""
        app = application if application is not None else self.checkpoints.application
        return app if stream == DEFAULT_STREAM else f"{app}/{stream}"

    def for_streams(self, names: list[str] | None) -> Settings:
        """These settings reading only the streams ``names`` (all when None or empty);
        ConfigError naming ``--stream`` for a name that is not configured."""
        if not names:
            return self
        known = [name for name, _ in self.named_streams]
        for name in names:
            if name not in known:
                raise ConfigError("--stream", name, f"no such stream; streams: {', '.join(known)}")
        if self.stream is not None:
            return self
        kept = [entry for entry in self.streams if entry.name in names]
        routes = [r for r in self.routes if r.streams is None or set(r.streams) & set(names)]
        copy = self.model_copy(update={"streams": kept, "routes": routes})
        copy._service_links = self._service_links
        return copy

    @model_validator(mode="after")
    def _one_stream_form(self) -> Settings:
        # ConfigError (not ValueError) passes through pydantic as it is: it names the key
        if self.stream is None and not self.streams:
            raise ConfigError(
                "stream",
                MISSING,
                "add a [stream] section (the table whose stream to read), or [[streams]] "
                "entries to read several",
            )
        if self.stream is not None and self.streams:
            raise ConfigError(
                "streams",
                [entry.name for entry in self.streams],
                "[stream] reads one stream and [[streams]] several; keep one form (a "
                '[[streams]] entry named "default" keeps [stream]\'s checkpoints)',
            )
        seen: set[str] = set()
        for index, entry in enumerate(self.streams):
            if entry.name in seen:
                raise ConfigError(
                    f"streams.{index}.name", entry.name, "used twice; stream names must be unique"
                )
            seen.add(entry.name)
        names = [name for name, _ in self.named_streams]
        for index, entry in enumerate(self.streams):
            takers = [r for r in self.routes if r.streams is None or entry.name in r.streams]
            if self.routes and not takers:
                raise ConfigError(
                    f"streams.{index}.name",
                    entry.name,
                    "no route takes this stream's records (every route's streams leaves it "
                    "out); add it to a route's streams, or remove the entry",
                )
        for index, route in enumerate(self.routes):
            for name in route.streams or ():
                if name not in names:
                    raise ConfigError(
                        f"routes.{index}.streams",
                        route.streams,
                        f"no stream named {name!r}; streams: {', '.join(names)}",
                    )
        return self

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


def _named_env_overrides(entries: list[Any], environ: Mapping[str, str], section: str) -> list[Any]:
    """Apply ``DSP_<SECTION>__<NAME>__KEY[__SUBKEY]`` variables to the entry of that name
    (``[[routes]]``, ``[[streams]]``)."""
    prefix = f"{ENV_PREFIX}{section.upper()}__"
    by_env_name = {
        str(r.get("name", "")).upper().replace("-", "_"): r for r in entries if isinstance(r, dict)
    }
    for var, raw in environ.items():
        if not var.upper().startswith(prefix):
            continue
        name, _, rest = var[len(prefix) :].partition("__")
        entry = by_env_name.get(name.upper())
        if entry is None or not rest:
            what = section.removesuffix("s")
            raise ConfigError(var, raw, f"no {what} named {name.lower()!r} in the configuration")
        path = [p.lower() for p in rest.split("__")]
        target = entry
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = _env_value(raw)
    return entries


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
    links = tuple(
        sorted(k for k, v in env.items() if k.startswith(ENV_PREFIX) and is_service_link(k, v))
    )
    env = {k: v for k, v in env.items() if k not in links}
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
        if section == "stream" and "streams" in data:
            continue  # [[streams]] replaces [stream]: its defaults do not apply
        current = data.get(section)
        data[section] = {**values, **(current if isinstance(current, dict) else {})}
    for section in ("routes", "streams"):
        whole = f"{ENV_PREFIX}{section.upper()}"
        if whole in {k.upper() for k in env}:
            raw = next(v for k, v in env.items() if k.upper() == whole)
            data[section] = _env_value(raw)
            env = {k: v for k, v in env.items() if k.upper() != whole}
        named_vars = {k for k in env if k.upper().startswith(f"{whole}__")}
        if isinstance(data.get(section), list) or named_vars:
            entries = data.get(section)
            data[section] = _named_env_overrides(
                entries if isinstance(entries, list) else [], env, section
            )
        env = {k: v for k, v in env.items() if k not in named_vars}

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
    loaded._service_links = links
    return loaded
