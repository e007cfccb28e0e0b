"""The package's public API is explicit, sorted and importable."""

from __future__ import annotations

import pathlib

import processor
import processor.testing


def test_all_is_sorted_and_every_name_exists() -> None:
    """__all__ lists the public names in order, and each one resolves."""
    for module in (processor, processor.testing):
        names = list(module.__all__)
        assert names == sorted(names, key=lambda n: (not n.isupper(), n))
        for name in names:
            assert hasattr(module, name), name


def test_consumers_use_only_the_public_api() -> None:
    """Built-in consumers import from `processor` itself, never its internals."""
    root = pathlib.Path(__file__).resolve().parents[2] / "consumers"
    for path in root.glob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith(("from processor.", "import processor.")):
                raise AssertionError(f"{path.name}: {line}")
