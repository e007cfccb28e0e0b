"""POST one JSON document per record and subscription, through the process's shared HTTP pool.

Body: ``event_id``, ``event_name``, ``table_name``, ``tenant``, ``keys``, ``new_image``,
``old_image``, ``sequence_number``, ``approximate_creation_time`` (ISO 8601 UTC), with plain
JSON values (numbers exact, sets as sorted lists, binary as base64). Headers:
``Idempotency-Key`` (the record's ``event_id``, the same on every attempt) and, with a secret,
``X-DSP-Timestamp`` and ``X-DSP-Signature`` (see :mod:`processor.webhooks.signatures`).

Who receives what: ``options.url`` (every record; ``{tenant}`` is filled in), or
``options.subscriptions`` (a list in the configuration), or ``options.subscriptions_table``
(a DynamoDB table, cached for ``subscriptions_ttl_s``). See :mod:`consumers.webhook.subscriptions`.

Delivery:

* records of different item keys go out concurrently (up to ``concurrency``, at most the
  pool's size), records of one key one at a time and in stream order; receivers that answer
  within 2 ms on average are called from the engine's thread instead (nothing to overlap);
* tenants take turns (round-robin), each within its own token bucket
  (``tenant_rate_per_s``, ``tenant_burst``, ``tenant_rates``), so a noisy tenant neither
  starves the others of connections nor floods its receiver;
* 5xx, 408, 429 (honouring ``Retry-After`` seconds or HTTP date), connection errors and
  timeouts are retried with exponential backoff and full jitter, bounded by
  ``max_attempts`` and ``deadline_s``; any other 4xx is final for that record (dead-lettered,
  delivery goes on);
* a per-host circuit breaker opens after ``breaker_threshold`` consecutive failures and lets
  one probe through after ``breaker_cool_down_s``. Meanwhile ``on_unavailable = "wait"``
  holds that host's records: they are reported failed (with the later records of their key)
  with ``retry_after`` = the next probe and marked ``held``: the engine tries them again
  then, spending no retry (ADR 0015), until the outage ends or ``max_record_age_s`` (the
  stream's retention) is reached, so order is kept and nothing is lost; ``"dead_letter"``
  dead-letters them with the reason at once, so the shard moves on.

A record whose retries are exhausted is reported failed together with the later records of
its key; the engine retries them per ``[batch]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from consumers.webhook.body import encode_body
from consumers.webhook.consumer import WebhookConsumer
from consumers.webhook.delivery import MAX_BREAKERS
from consumers.webhook.options import WebhookOptions, all_secrets
from consumers.webhook.subscriptions import (
    ANY_TENANT,
    StaticSubscriptions,
    Subscription,
    SubscriptionSource,
    TableSubscriptions,
)
from processor import ConfigError, ConsumerContext, redact_url
from processor.webhooks import EgressPolicy, host_is_templated

__all__ = [
    "MAX_BREAKERS",
    "WebhookConsumer",
    "WebhookOptions",
    "build",
    "encode_body",
]

log = structlog.get_logger()


def _guard(url: str, context: ConsumerContext) -> bool:
    """Operator-written URLs are trusted, unless their host comes from a record or the
    operator asked for the guard everywhere (``[http] guard_operator_urls``)."""
    policy = context.egress or EgressPolicy()
    return policy.guard_operator_urls or host_is_templated(url)


def build(options: Mapping[str, Any], context: ConsumerContext) -> WebhookConsumer:
    opts = WebhookOptions.model_validate(options)
    source: SubscriptionSource
    if opts.subscriptions_table is not None and context.offline:
        source = StaticSubscriptions([])  # the table is read online only
    elif opts.subscriptions_table is not None:
        client = getattr(context.clients, "dynamodb", None)
        if client is None:
            raise ConfigError(
                f"{context.config_key}.options.subscriptions_table",
                opts.subscriptions_table,
                "needs DynamoDB access ([aws] settings)",
            )
        source = TableSubscriptions(
            client,
            opts.subscriptions_table,
            ttl_s=opts.subscriptions_ttl_s,
            stats=context.stats,
            max_subscriptions=opts.max_subscriptions,
        )
        try:
            source.lookup(None, "INSERT")  # read it now: a missing table stops the start
        except Exception as exc:  # noqa: BLE001 - becomes a configuration error naming the key
            raise ConfigError(
                f"{context.config_key}.options.subscriptions_table",
                opts.subscriptions_table,
                f"cannot read subscriptions: {exc}",
            ) from None
    elif opts.subscriptions is not None:
        source = StaticSubscriptions(
            [
                Subscription(
                    s.tenant,
                    s.url,
                    all_secrets(s.secret, s.secrets) or all_secrets(opts.secret, opts.secrets),
                    frozenset(s.events),
                    guarded=_guard(s.url, context),
                )
                for s in opts.subscriptions
            ]
        )
    else:
        assert opts.url is not None
        source = StaticSubscriptions(
            [
                Subscription(
                    ANY_TENANT,
                    opts.url,
                    all_secrets(opts.secret, opts.secrets),
                    guarded=_guard(opts.url, context),
                )
            ]
        )
        if opts.url.startswith("http://") and not all_secrets(opts.secret, opts.secrets):
            log.info("webhook_unsigned", route=context.route, url=redact_url(opts.url))
    return WebhookConsumer(opts, context, source)
