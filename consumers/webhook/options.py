"""The webhook route's options, validated at start (errors name the key)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from consumers._options import Options
from consumers.webhook.subscriptions import (
    ANY_TENANT,
)
from processor.webhooks import check_url_template, secret_key

__all__ = ["SubscriptionOptions", "WebhookOptions"]


class SubscriptionOptions(Options):
    tenant: str = ANY_TENANT
    url: str
    secret: SecretStr | None = Field(default=None, repr=False)
    secrets: list[SecretStr] = Field(default_factory=list, repr=False)
    events: list[Literal["INSERT", "MODIFY", "REMOVE"]] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value)


_check_url = check_url_template


def all_secrets(secret: SecretStr | None, secrets: list[SecretStr]) -> tuple[str, ...]:
    """The secrets' values, ``secret`` first (held as SecretStr everywhere else)."""
    return tuple(s.get_secret_value() for s in ([secret] if secret else []) + secrets)


class WebhookOptions(Options):
    url: str | None = None
    secret: SecretStr | None = Field(default=None, repr=False)
    #: several secrets during a rotation: every delivery is signed with each
    secrets: list[SecretStr] = Field(default_factory=list, repr=False)
    #: "standard-webhooks" (webhook-id/-timestamp/-signature) or the legacy "x-dsp" headers
    signature: Literal["standard-webhooks", "x-dsp"] = "standard-webhooks"
    subscriptions: list[SubscriptionOptions] | None = None
    subscriptions_table: str | None = Field(default=None, min_length=3, max_length=255)
    subscriptions_ttl_s: float = Field(default=300.0, ge=0)
    #: a larger subscriptions table is refused (the cache keeps what it had, and says so)
    max_subscriptions: int = Field(default=100_000, ge=1)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=5, ge=1, le=100)
    deadline_s: float = Field(default=120.0, gt=0)
    base_delay_s: float = Field(default=0.2, gt=0)
    max_delay_s: float = Field(default=30.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)  # Authorization...
    concurrency: int | None = Field(default=None, ge=1, le=256)
    tenant_rate_per_s: float | None = Field(default=None, gt=0)
    tenant_burst: float = Field(default=10.0, ge=1)
    tenant_rates: dict[str, float] = Field(default_factory=dict)
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cool_down_s: float = Field(default=30.0, gt=0)
    on_unavailable: Literal["wait", "dead_letter"] = "wait"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @model_validator(mode="after")
    def _one_source(self) -> WebhookOptions:
        given = [
            name
            for name in ("url", "subscriptions", "subscriptions_table")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of url, subscriptions, subscriptions_table"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.signature == "standard-webhooks":
            named = [
                ("secret", self.secret),
                *((f"secrets.{i}", x) for i, x in enumerate(self.secrets)),
            ]
            for s in self.subscriptions or []:
                named += [("subscriptions: secret", s.secret)]
                named += [("subscriptions: secrets", x) for x in s.secrets]
            for name, secret in named:
                if secret is not None:
                    try:
                        secret_key(secret.get_secret_value())
                    except ValueError as exc:
                        raise ValueError(f"{name}: {exc}") from None
        return self
