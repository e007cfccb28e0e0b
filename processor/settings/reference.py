"""The options tables in the docs, kept true to the models.

A table in a docs page is marked with the model it documents::

    <!-- options: processor.settings.sections:StreamSettings stream. -->
    | key | type | default | meaning |
    ...
    <!-- /options -->

The key, type and default columns are rendered from the model's fields; the meaning column is
the one thing written by hand, and is kept from the page. :func:`check` lists what is wrong
(a field without a row, a row without a field, a meaning left empty, a stale type or default);
``python -m processor.settings.reference --write`` rewrites the tables from the models,
keeping the meanings (a new field gets a row whose meaning must then be written).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["PAGES", "check", "render"]

ROOT = Path(__file__).resolve().parents[2]
#: the pages whose tables are checked (make docs rewrites them)
PAGES = (ROOT / "docs" / "configuration.md", ROOT / "docs" / "consumers.md")

_TABLE = re.compile(
    r"(<!-- options: (?P<model>[\w.]+:\w+) (?P<prefix>\S*) -->\n)(?P<body>.*?)(<!-- /options -->)",
    re.DOTALL,
)
_HEADER = "| key | type | default | meaning |\n|---|---|---|---|\n"
#: the meaning a new row gets from --write; check() refuses it, so it never ships
_NO_MEANING = "(no meaning written yet: tests/unit/test_docs.py fails until there is one)"


def _model(path: str) -> type[BaseModel]:
    module, _, name = path.partition(":")
    model = getattr(importlib.import_module(module), name)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{path} is not a pydantic model")
    return model


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is SecretStr:
        return "secret"
    if origin is Literal:
        return " \\| ".join(f'"{a}"' for a in args)
    if origin in (typing.Union, types.UnionType):
        kinds = [_type(a) for a in args if a is not type(None)]
        optional = type(None) in args
        return " \\| ".join(kinds) + (" (optional)" if optional else "")
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type(a) for a in args)}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "(required)"
    value = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, float) and value.is_integer():
        return f"`{value:.1f}`"
    return f"`{value!r}`"


def _meanings(body: str) -> dict[str, str]:
    """key -> meaning, from the rows of an existing table."""
    out = {}
    for line in body.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 4 and cells[0].startswith("`"):
            out[cells[0].strip("`")] = cells[3]
    return out


def _rows(model: type[BaseModel], prefix: str, meanings: dict[str, str]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        meaning = meanings.get(key) or _NO_MEANING
        rows.append(f"| `{key}` | {_type(field.annotation)} | {_default(field)} | {meaning} |")
    return rows


def render(text: str) -> str:
    """``text`` with every marked table rendered from its model (meanings kept)."""

    def table(match: re.Match[str]) -> str:
        model = _model(match["model"])
        rows = _rows(model, match["prefix"], _meanings(match["body"]))
        return match.group(1) + _HEADER + "\n".join(rows) + "\n" + match.group(5)

    return _TABLE.sub(table, text)


def check(text: str, *, where: str = "") -> list[str]:
    """What is wrong with the marked tables of ``text`` (empty when all is well)."""
    problems = []
    for match in _TABLE.finditer(text):
        model = _model(match["model"])
        have = _meanings(match["body"])
        fields = {f"{match['prefix']}{n}" for n in model.model_fields}
        for key in sorted(fields - set(have)):
            problems.append(f"{where}: {key} ({match['model']}) has no row; run make docs")
        for key in sorted(set(have) - fields):
            problems.append(f"{where}: {key} has a row but {match['model']} has no such field")
        for key, meaning in have.items():
            if key in fields and (not meaning or meaning == _NO_MEANING):
                problems.append(f"{where}: {key}: write what it does in the meaning column")
    if render(text) != text and not problems:
        problems.append(f"{where}: a type or default is stale; run make docs")
    if "<!-- options:" not in text:
        problems.append(f"{where}: no marked options table")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the tables in place")
    args = parser.parse_args()
    problems: list[str] = []
    for page in PAGES:
        text = page.read_text()
        if args.write:
            page.write_text(render(text))
            text = page.read_text()
        problems += check(text, where=str(page.relative_to(ROOT)))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
