"""The CHANGELOG has an entry for the version the package says it is (pyproject.toml)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_changelog_has_an_entry_for_the_current_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    headings = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings, "CHANGELOG.md has no version headings"
    assert headings[0] == version, (
        f"pyproject.toml says {version}; the newest CHANGELOG entry is {headings[0]}: add a "
        f"'## {version}' section"
    )
    assert len(headings) == len(set(headings)), "a version appears twice"
