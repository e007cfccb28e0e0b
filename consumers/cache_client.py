"""Kept for services that import ``consumers.cache_client``: the client lives in
:mod:`consumers.cache.client` (``from consumers.cache import SubscribedCache``)."""

from consumers.cache.client import SubscribedCache

__all__ = ["SubscribedCache"]
