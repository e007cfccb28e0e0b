"""The webhook toolkit: what a consumer that calls tenants' HTTP endpoints needs, beside
:mod:`processor`'s consumer contract. The built-in webhook consumer is built on it.

* Where a URL may go (``egress``): the destination policy for tenant-supplied URLs, checked
  at every connection with the address pinned (no DNS rebinding), and URL templates.
* Flow control (``flow``): a breaker per host, token buckets, a scheduler that takes
  tenants in turn.
* Signatures (``signatures``): Standard Webhooks signing and verification, and the ``x-dsp``
  headers of 0.1.
"""

from processor.webhooks.egress import (
    DestinationNotAllowed,
    EgressPolicy,
    check_url_template,
    host_is_templated,
    pinned_request,
)
from processor.webhooks.flow import CircuitBreaker, CircuitOpen, FairScheduler, TokenBuckets
from processor.webhooks.signatures import (
    InvalidSignature,
    new_secret,
    secret_key,
    signature_headers,
    standard_headers,
    verify,
)

__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "DestinationNotAllowed",
    "EgressPolicy",
    "FairScheduler",
    "InvalidSignature",
    "TokenBuckets",
    "check_url_template",
    "host_is_templated",
    "new_secret",
    "pinned_request",
    "secret_key",
    "signature_headers",
    "standard_headers",
    "verify",
]
