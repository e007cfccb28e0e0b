"""A [[routes]] entry: consumer, filter pattern (compiled and checked at start), options."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from processor.core.consumer import builtin_consumers
from processor.core.routing import PatternError, compile_filters
from processor.settings.sections import Section

__all__ = ["RouteSettings"]


_CALLABLE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _refuse_numeric_on_n(source: str) -> None:
    """A ``numeric`` matcher on an N value can never match under AWS's rules: say so."""

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{path}.{key}" if path else key
                numeric = isinstance(value, list) and any(
                    isinstance(v, dict) and "numeric" in v for v in value
                )
                if key in ("N", "NS") and numeric:
                    raise PatternError(
                        "numeric never matches a DynamoDB N value in AWS (N values are "
                        "strings); set filter_extensions = true on this route to compare "
                        "them as numbers",
                        path=here,
                    )
                walk(value, here)
        elif isinstance(node, list):
            for item in node:
                walk(item, path)

    walk(json.loads(source), "")


class RouteSettings(Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    consumer: str
    #: opt-in extensions to AWS's filter language (``numeric`` compares N values); declared
    #: before ``filter`` so that the filter's validator sees it
    filter_extensions: bool = False
    filter: str | list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    #: "record": ``consumer`` is your function of one record (docs/consumers.md)
    kind: Literal["batch", "record"] = "batch"
    #: a tumbling window (seconds, 1..900, as Lambda's TumblingWindowInSeconds): ``consumer``
    #: is ``handle(records, window) -> state`` (docs/consumers.md, ADR 0025)
    tumbling_window_s: int | None = Field(default=None, ge=1, le=900)
    #: the ``[[streams]]`` whose records this route takes (by name); none: every stream
    streams: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _windows_are_for_functions(self) -> RouteSettings:
        if self.tumbling_window_s is not None and (
            self.consumer in builtin_consumers() or self.kind == "record"
        ):
            raise ValueError(
                f'route "{self.name}": tumbling_window_s takes your window function '
                '("package.module:function" called as handle(records, window) -> state), '
                'not a built-in consumer or kind = "record"'
            )
        return self

    @model_validator(mode="after")
    def _record_kind_is_for_functions(self) -> RouteSettings:
        if self.kind == "record" and self.consumer in builtin_consumers():
            raise ValueError(
                f'route "{self.name}": kind = "record" is for your own function '
                '("package.module:function"); the built-in consumers take batches'
            )
        return self

    @field_validator("consumer")
    @classmethod
    def _known_consumer(cls, value: str) -> str:
        names = builtin_consumers()
        if value in names or _CALLABLE_SPEC.match(value):
            return value
        valid = ", ".join(f'"{n}"' for n in sorted(names))
        raise ValueError(f'unknown consumer; valid: {valid}, or "package.module:callable"')

    @field_validator("filter")
    @classmethod
    def _valid_filter(
        cls, value: str | list[str] | None, info: ValidationInfo
    ) -> str | list[str] | None:
        if value is None:
            return None
        sources = [value] if isinstance(value, str) else value
        extensions = bool(info.data.get("filter_extensions"))
        try:
            compile_filters(sources, extensions=extensions)
            if not extensions:
                for source in sources:
                    _refuse_numeric_on_n(source)
        except PatternError as exc:
            route = json.dumps(info.data.get("name", "?"))
            raise ValueError(f"route {route}: malformed filter pattern: {exc}") from None
        return value

    @property
    def filters(self) -> list[str]:
        if self.filter is None:
            return []
        return [self.filter] if isinstance(self.filter, str) else list(self.filter)
