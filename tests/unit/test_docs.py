"""The docs stay true: every relative link resolves, the options tables match the models,
config/defaults.toml names every key, and every dsp command and flag is in docs/cli.md."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

import processor.settings.reference as reference
from benchmarks.publish import PAGE, RESULTS, publish
from processor.cli.parser import make_parser
from processor.settings import Settings
from processor.settings.reference import PAGES, check
from processor.settings.sections import MultiLangSettings, StreamSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    assert broken == [], f"{page.name}: {broken}"


def test_the_readme_is_a_front_page() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_options_tables_match_the_models(page: Path) -> None:
    assert check(page.read_text(), where=page.name) == []


class _WithANewField(BaseModel):
    existing: int = 1
    added_without_docs: str = "x"


def test_a_field_added_without_docs_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check sees a new field: a table for a model with one more field than its rows."""
    monkeypatch.setattr(reference, "_model", lambda path: _WithANewField)
    table = (
        "<!-- options: any.module:Model x. -->\n"
        "| key | type | default | meaning |\n|---|---|---|---|\n"
        "| `x.existing` | int | `1` | a field with its meaning |\n"
        "<!-- /options -->\n"
    )
    problems = check(table, where="page.md")
    assert problems == [
        "page.md: x.added_without_docs (any.module:Model) has no row; run make docs"
    ]


def _defaults_keys() -> dict[str, set[str]]:
    """[section] -> keys named in config/defaults.toml, set or commented out."""
    keys: dict[str, set[str]] = {}
    section = ""
    for line in (ROOT / "config" / "defaults.toml").read_text().splitlines():
        header = re.match(r"^#? ?\[(\w+)\]", line)
        if header:
            section = header.group(1)
            continue
        key = re.match(r"^#? ?(\w+) = ", line)
        if key and section:
            keys.setdefault(section, set()).add(key.group(1))
    return keys


def test_defaults_toml_names_every_key() -> None:
    named = _defaults_keys()
    sections: dict[str, type[BaseModel]] = {
        name: field.annotation  # type: ignore[misc]
        for name, field in Settings.model_fields.items()
        if name not in ("routes", "multilang", "stream", "streams")
    }
    sections["stream"] = StreamSettings  # [[streams]] entries: a name and these keys
    sections["multilang"] = MultiLangSettings
    missing = [
        f"{name}.{key}"
        for name, model in sections.items()
        for key in model.model_fields
        if key not in named.get(name, set())
    ]
    assert missing == []
    # and what is set there is the model's default
    document = tomllib.loads((ROOT / "config" / "defaults.toml").read_text())
    defaults = Settings.model_validate(
        {**document, "checkpoints": {**document["checkpoints"], "application": "x"},
         "stream": {**document["stream"], "table": "orders"},
         "routes": [{"name": "r", "consumer": "cache", "options": {"keys": ["k:{pk}"]}}]}
    )  # fmt: skip
    for name, values in document.items():
        for key in values:
            field = sections[name].model_fields[key]
            default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
            assert getattr(getattr(defaults, name), key) == default, f"{name}.{key}"


def _commands() -> dict[str, argparse.ArgumentParser]:
    """'dsp run', 'dsp dead-letter redrive', ... -> their parsers."""
    found: dict[str, argparse.ArgumentParser] = {}
    pending = [("dsp", make_parser())]
    while pending:
        name, parser = pending.pop()
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[name] = parser
        for action in subs:
            pending += [(f"{name} {n}", p) for n, p in action.choices.items()]
    return found


def test_every_command_and_flag_is_in_the_cli_page() -> None:
    page = (ROOT / "docs" / "cli.md").read_text()
    missing = []
    for name, parser in _commands().items():
        if name not in page:
            missing.append(name)
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag not in ("--help",) and flag not in page:
                    missing.append(f"{name} {flag}")
    assert missing == []


def test_the_performance_page_is_one_bench_run_published_whole() -> None:
    """docs/performance.md's figures are benchmarks/results.md's, rendered by the script."""
    page = PAGE.read_text()
    assert publish(page, RESULTS.read_text()) == page, "run python -m benchmarks.publish"
    assert "Produced by `make bench` on " in page


def test_a_row_written_by_make_docs_is_refused_until_its_meaning_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--write adds the new field's row with a placeholder meaning, which check() refuses."""
    monkeypatch.setattr(reference, "_model", lambda path: _WithANewField)
    table = (
        "<!-- options: any.module:Model x. -->\n"
        "| key | type | default | meaning |\n|---|---|---|---|\n"
        "| `x.existing` | int | `1` | a field with its meaning |\n"
        "<!-- /options -->\n"
    )
    written = reference.render(table)
    assert "| `x.added_without_docs` | str |" in written
    assert check(written, where="page.md") == [
        "page.md: x.added_without_docs: write what it does in the meaning column"
    ]
