"""The event source mapping's ``FilterCriteria``, from the routes' filters (`dsp lambda-filters`).

Lambda drops an event that matches no filter before the function is invoked, and bills
nothing for it. That is only safe when every record the handler would act on matches some
filter. So FilterCriteria are given only when:

* every route has a filter (a route without one needs every record);
* no route uses ``filter_extensions`` (they are not AWS's pattern language);
* records without a tenant are not dead-lettered (``[tenancy] missing = "dead_letter"`` must
  see them); and
* the distinct patterns fit the mapping's limit (5 filters by default).

Otherwise there are none, and the notes say why. For a Kinesis Data Streams for DynamoDB
source, Lambda filters on the record's decoded ``data``, so each pattern is nested under
``data``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from processor.settings import Settings

__all__ = ["MAX_FILTERS", "LambdaFilters", "lambda_filters"]

#: filters per event source mapping (Lambda's default quota)
MAX_FILTERS = 5


@dataclass(frozen=True, slots=True)
class LambdaFilters:
    #: ``{"Filters": [{"Pattern": "..."}]}``, or None: the mapping must not filter
    criteria: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def _canonical(pattern: str) -> str:
    return json.dumps(json.loads(pattern), sort_keys=True, separators=(",", ":"))


def lambda_filters(settings: Settings) -> LambdaFilters:
    """The FilterCriteria that drop only records no route would act on."""
    if settings.tenancy.missing == "dead_letter":
        return LambdaFilters(
            None,
            ['[tenancy] missing = "dead_letter" must see every record (records without a '
             "tenant are dead-lettered whatever the routes' filters)"],
        )  # fmt: skip
    patterns: list[str] = []
    for route in settings.routes:
        if not route.filters:
            return LambdaFilters(
                None, [f"route {route.name!r} has no filter: it needs every record"]
            )
        if route.filter_extensions:
            return LambdaFilters(
                None,
                [f"route {route.name!r} uses filter_extensions, which Lambda's filters lack"],
            )
        patterns += [_canonical(p) for p in route.filters]
    distinct = list(dict.fromkeys(patterns))
    if not distinct:
        return LambdaFilters(None, ["no routes"])
    if len(distinct) > MAX_FILTERS:
        return LambdaFilters(
            None,
            [f"{len(distinct)} distinct patterns, more than the mapping's {MAX_FILTERS} "
             "filters (a quota increase allows more): merge patterns, or filter in the routes "
             "only"],
        )  # fmt: skip
    if settings.only_stream.source == "kinesis":  # one mapping reads one stream
        distinct = [
            json.dumps({"data": json.loads(p)}, sort_keys=True, separators=(",", ":"))
            for p in distinct
        ]
    return LambdaFilters({"Filters": [{"Pattern": p} for p in distinct]})
