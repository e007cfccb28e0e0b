"""consumers.cache_client stays importable for services that embed SubscribedCache."""

from __future__ import annotations


def test_the_old_cache_client_path_still_imports() -> None:
    """README of earlier releases told services `from consumers.cache_client import ...`."""
    from consumers.cache import SubscribedCache  # noqa: PLC0415
    from consumers.cache_client import SubscribedCache as Old  # noqa: PLC0415

    assert Old is SubscribedCache
