"""The one AWS client factory and the one translation of botocore's errors.

Adapters (``processor.sources.dynamodb``, the lease store, the SQS sink) catch botocore's
exceptions and raise what :func:`translate_client_error` makes of them: everything above the
adapters sees only ``processor.errors``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from processor.errors import (
    ConfigError,
    IteratorExpiredError,
    ProcessorError,
    StreamNotFoundError,
    TransientError,
    TrimmedDataError,
)
from processor.fast_path import FastPath, fast_path_for

if TYPE_CHECKING:
    from processor.settings import AwsSettings

__all__ = [
    "THROTTLING_CODES",
    "AwsClients",
    "clients_for",
    "describe_or_missing",
    "error_code",
    "make_clients",
    "translate_client_error",
]

#: Error codes that mean "slow down", from any DynamoDB, Streams or SQS call.
THROTTLING_CODES = frozenset(
    {
        "LimitExceededException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "Throttling",
    }
)
_SERVER_CODES = frozenset({"InternalServerError", "ServiceUnavailable", "InternalFailure"})
_CONNECTION_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


#: error codes that mean "these credentials may not do this" (or are not valid at all)
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "InvalidSignatureException",
    }
)
_DENIED_FIX = (
    "the credentials may not do this: grant what `dsp iam-policy --config FILE` prints, or "
    "check which identity runs dsp"
)
_CREDENTIALS_FIX = (
    "no AWS credentials were found: give the process a role, or set AWS_PROFILE / aws.profile "
    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


def _unreachable_fix(exc: BotoCoreError) -> str:
    endpoint = getattr(exc, "kwargs", {}).get("endpoint_url")
    where = f" {endpoint}" if endpoint else ""
    return (
        f"nothing answered at{where}: check aws.endpoint_url (or the region) and that the "
        "network lets dsp reach it"
    )


def translate_client_error(
    exc: ClientError | BotoCoreError,
    operation: str,
    *,
    shard_id: str | None = None,
    consumer: str | None = None,
) -> ProcessorError:
    """Map one botocore exception to the project's error tree (call as ``raise ... from``)."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = (
            f"{operation}: {code or status}: {exc.response.get('Error', {}).get('Message', '')}"
        )
        if code == "ExpiredIteratorException":
            return IteratorExpiredError(message, shard_id=shard_id, consumer=consumer)
        if code == "TrimmedDataAccessException":
            return TrimmedDataError(message, shard_id=shard_id, consumer=consumer)
        if code == "ResourceNotFoundException":
            return StreamNotFoundError(message, shard_id=shard_id, consumer=consumer)
        if code in THROTTLING_CODES:
            return TransientError(message, throttled=True, shard_id=shard_id, consumer=consumer)
        if code in _SERVER_CODES or status >= 500 or status == 429:
            return TransientError(message, shard_id=shard_id, consumer=consumer)
        fix = _DENIED_FIX if code in _DENIED_CODES else None
        return ProcessorError(message, shard_id=shard_id, consumer=consumer, fix=fix)
    if isinstance(exc, _CONNECTION_ERRORS):
        return TransientError(
            f"{operation}: {exc}", shard_id=shard_id, consumer=consumer, fix=_unreachable_fix(exc)
        )
    fix = (
        _CREDENTIALS_FIX if isinstance(exc, NoCredentialsError | PartialCredentialsError) else None
    )
    return ProcessorError(f"{operation}: {exc}", shard_id=shard_id, consumer=consumer, fix=fix)


class AwsClients:
    """The boto3 clients the process shares (low-level clients are thread-safe), each made on
    first use: a process that never calls a service never pays for its client (a Lambda
    function whose routes call no AWS service imports no boto3 at all: its cold start)."""

    def __init__(
        self,
        make: Callable[[str], Any],
        *,
        region: str,
        endpoint_url: str | None,
        make_fast: Callable[[str, Any], FastPath | None] | None = None,
        make_unretried: Callable[[str], Any] | None = None,
    ) -> None:
        """``make_fast``: the fast path beside a service's client (ADR 0030), if any;
        ``make_unretried``: a client of the service that makes each call once (``unretried``;
        without it, the retrying client is used)."""
        self._make = make
        self._make_unretried = make_unretried
        self._make_fast = make_fast
        self._made: dict[str, Any] = {}
        self._fast: dict[str, FastPath | None] = {}
        self._lock = threading.Lock()
        self.region = region
        self.endpoint_url = endpoint_url

    def _client(self, service: str) -> Any:
        return self._client_made(service, lambda: self._make(service))

    def _client_made(self, name: str, make: Callable[[], Any]) -> Any:
        client = self._made.get(name)
        if client is None:
            with self._lock:
                client = self._made.get(name)
                if client is None:
                    client = self._made[name] = make()
        return client

    def unretried(self, service: str) -> Any:
        """A client of the service whose calls botocore makes once: for a caller that retries
        and paces itself. The batch writer's pacer owns throttling (ADR 0032): botocore's
        backoff of up to a second on a throttled call held the batch's last writes while the
        table sat idle."""
        make = self._make_unretried
        if make is None:
            return self._client(service)
        return self._client_made(f"{service}:unretried", lambda: make(service))

    def fast(self, service: str) -> FastPath | None:
        """The fast path for the service's hottest calls (GetRecords, lease renewals), made with
        its client; None when there is none (``[aws] fast_path = false``, a proxy)."""
        if self._make_fast is None:
            return None
        if service not in self._fast:
            client = self._client(service)
            with self._lock:
                if service not in self._fast:
                    self._fast[service] = self._make_fast(service, client)
        return self._fast[service]

    @property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @property
    def streams(self) -> Any:
        return self._client("dynamodbstreams")

    @property
    def sqs(self) -> Any:
        return self._client("sqs")

    @property
    def kinesis(self) -> Any:
        return self._client("kinesis")


def make_clients(
    *,
    region: str,
    endpoint_url: str | None,
    dynamodb_endpoint_url: str | None = None,
    streams_endpoint_url: str | None = None,
    kinesis_endpoint_url: str | None = None,
    profile: str | None = None,
    retry_mode: str,
    max_attempts: int,
    pool_size: int,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 30.0,
    fast_path: bool = True,
) -> AwsClients:
    """Clients with standard/adaptive retries and a pool sized for the threads sharing it,
    each made on first use; a named profile is checked now (a bad one is a ConfigError at
    start).

    botocore's default "legacy" mode does not retry ``LimitExceededException`` for the streams
    client; "standard" and "adaptive" do.
    """
    endpoints = {
        "dynamodb": dynamodb_endpoint_url or endpoint_url,
        "dynamodbstreams": streams_endpoint_url or endpoint_url,
        "kinesis": kinesis_endpoint_url or endpoint_url,
        "sqs": endpoint_url,
    }
    sessions: list[Any] = []
    lock = threading.Lock()

    def session() -> Any:
        with lock:
            if not sessions:
                import boto3  # noqa: PLC0415 - only once a client is wanted (cold start)
                from botocore.exceptions import ProfileNotFound  # noqa: PLC0415

                try:
                    sessions.append(boto3.session.Session(region_name=region, profile_name=profile))
                except ProfileNotFound as exc:
                    raise ConfigError(
                        "aws.profile",
                        profile,
                        "no such profile in the AWS config or credentials file",
                    ) from exc
            return sessions[0]

    def make(service: str, *, once: bool = False) -> Any:
        from botocore.config import Config  # noqa: PLC0415 - only once a client is wanted

        # total_max_attempts: every attempt, the first included (botocore's "max_attempts"
        # counts only the retries: 5 made 6 attempts, where aws.max_attempts says 5)
        retries: Any = {"mode": retry_mode, "total_max_attempts": 1 if once else max_attempts}
        config = Config(
            region_name=region,
            retries=retries,
            max_pool_connections=pool_size,
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            tcp_keepalive=True,
        )
        kwargs: dict[str, Any] = {"config": config}
        if endpoints[service]:
            kwargs["endpoint_url"] = endpoints[service]
        return session().client(service, **kwargs)

    def make_fast(_service: str, client: Any) -> FastPath | None:
        return fast_path_for(
            client,
            session().get_credentials(),
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
        )

    if profile is not None:
        session()  # a profile that does not exist stops the start, naming aws.profile
    return AwsClients(
        make,
        region=region,
        endpoint_url=dynamodb_endpoint_url or endpoint_url,
        make_fast=make_fast if fast_path else None,
        make_unretried=lambda service: make(service, once=True),
    )


def clients_for(settings: AwsSettings, *, pool_size: int, region: str | None = None) -> AwsClients:
    """The clients for the ``[aws]`` settings: every path (worker, CLI, Lambda) builds
    its clients here, so endpoints, retries and timeouts are honoured everywhere."""
    return make_clients(
        region=region or settings.region,
        endpoint_url=settings.endpoint_url,
        dynamodb_endpoint_url=settings.dynamodb_endpoint_url,
        streams_endpoint_url=settings.streams_endpoint_url,
        kinesis_endpoint_url=settings.kinesis_endpoint_url,
        profile=settings.profile,
        retry_mode=settings.retry_mode,
        max_attempts=settings.max_attempts,
        pool_size=pool_size,
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        fast_path=settings.fast_path,
    )


def describe_or_missing(
    call: Callable[[], Any], operation: str, *, key: str, value: str, clients: AwsClients, what: str
) -> Any:
    """A Describe call for a configured resource: its answer; ConfigError naming the key when
    the resource does not exist (``what``: how to say so), the project's error otherwise."""
    try:
        return call()
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            where = clients.endpoint_url or f"region {clients.region}"
            raise ConfigError(key, value, f"{what} at {where}; check the name and region") from exc
        raise translate_client_error(exc, operation) from exc
    except BotoCoreError as exc:
        raise translate_client_error(exc, operation) from exc
