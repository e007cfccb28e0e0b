"""The cache route's options, and the in-process cache ``redis_url = "memory"`` names."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator

from consumers._options import Options

__all__ = ["MEMORY", "CacheOptions", "MemoryCache"]

MEMORY = "memory"
_ABSENT = object()


class CacheOptions(Options):
    keys: list[str] = Field(min_length=1)
    redis_url: str = MEMORY
    cluster: bool = False
    channel: str | None = None
    max_attempts: int = Field(default=5, ge=1, le=100)
    socket_timeout_s: float = Field(default=2.0, gt=0)

    @field_validator("redis_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value != MEMORY and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError('must be "memory" or a redis://, rediss:// or unix:// URL')
        return value


class MemoryCache:
    """A thread-safe in-process cache (what ``redis_url = "memory"`` invalidates)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}

    def set(self, name: str, value: Any) -> None:
        with self._lock:
            self._data[name] = value

    def get(self, name: str) -> Any:
        with self._lock:
            return self._data.get(name)

    def delete(self, names: Sequence[str]) -> int:
        with self._lock:
            return sum(self._data.pop(n, _ABSENT) is not _ABSENT for n in names)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
