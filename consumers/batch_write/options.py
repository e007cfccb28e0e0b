"""The batch_write route's options, validated at start (errors name the key)."""

from __future__ import annotations

from pydantic import Field

from consumers._options import Options

__all__ = ["BatchWriteOptions"]


class BatchWriteOptions(Options):
    table: str = Field(min_length=3, max_length=255)
    transform: str | None = None
    max_attempts: int = Field(default=8, ge=1, le=100)
    base_delay_s: float = Field(default=0.05, gt=0)
    max_delay_s: float = Field(default=5.0, gt=0)
    concurrency: int = Field(default=4, ge=1, le=64)
    min_rate_per_s: float = Field(default=25.0, gt=0)
    max_rate_per_s: float = Field(default=40000.0, gt=0)  # above this: unlimited again
    rate_increase_per_s: float = Field(default=100.0, gt=0)  # added per successful call
    versioned: bool = False
    version_attribute: str = Field(default="_dsp_version", min_length=1, max_length=255)
    tombstone_ttl_s: int | None = Field(default=None, ge=60)
