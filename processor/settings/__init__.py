"""Typed settings: one TOML file, every key overridable by a ``DSP_`` environment variable.

Precedence: command-line flag, then environment, then the TOML file, then the default.
Nested keys use ``__``: ``DSP_AWS__ENDPOINT_URL``, ``DSP_STREAM__TABLE``,
``DSP_BATCH__MAX_RETRIES``. A route's keys are addressed by its name:
``DSP_ROUTES__<NAME>__OPTIONS__SECRET`` (name upper-cased, ``-`` as ``_``), and a
``[[streams]]`` entry's likewise: ``DSP_STREAMS__<NAME>__TABLE``. ``DSP_ROUTES`` and
``DSP_STREAMS`` replace the whole list with JSON.

Every value is checked at start. Any problem raises :class:`~processor.errors.ConfigError`
naming the key, the value and what would be valid.
"""

from processor.settings.loading import Settings, load_settings
from processor.settings.routes import RouteSettings
from processor.settings.sections import (
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
    TableName,
    TenancySettings,
)

__all__ = [
    "ENV_PREFIX",
    "AwsSettings",
    "BatchSettings",
    "CheckpointSettings",
    "DeadLetterSettings",
    "HttpSettings",
    "LoggingSettings",
    "MultiLangSettings",
    "NamedStreamSettings",
    "ObservabilitySettings",
    "RouteSettings",
    "Settings",
    "ShutdownSettings",
    "StreamSettings",
    "TableName",
    "TenancySettings",
    "load_settings",
]
