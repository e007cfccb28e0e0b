"""Every public error is in processor/errors.py, and its drawn tree is the real one (issue 27,
item 6): the drawing in the module docstring is compared with the ProcessorError subclasses of
every module of processor and consumers."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import consumers
import processor
from processor import errors
from processor.errors import ProcessorError


def _import_everything() -> None:
    for package in (processor, consumers):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not module.name.endswith("__main__"):  # running it is what importing does
                importlib.import_module(module.name)


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    sub: type
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _drawn() -> dict[str, str]:
    """Each class the docstring draws -> its parent in the drawing."""
    doc = inspect.getdoc(errors) or ""
    parents: dict[str, str] = {}
    stack: list[str] = ["ProcessorError"]
    lines = doc.splitlines()
    root = next(line for line in lines if line.strip() == "ProcessorError")
    base = len(root) - len(root.lstrip())
    for line in (line[base:] for line in lines):
        match = re.match(r"^([│ ]*)[├└]── ([A-Za-z][A-Za-z, ]*?)(?:\s{2,}|\s\(|$)", line)
        if not match:
            continue
        depth = len(match.group(1)) // 4
        names = [n.strip() for n in match.group(2).split(",")]
        del stack[depth + 1 :]
        for name in names:
            parents[name] = stack[depth]
        stack.append(names[-1])
    return parents


def test_every_public_error_is_defined_in_errors_py() -> None:
    _import_everything()
    outside = sorted(
        f"{cls.__module__}.{cls.__name__}"
        for cls in _subclasses(ProcessorError)
        if not cls.__name__.startswith("_")
        and cls.__module__ != "processor.errors"
        and not cls.__module__.startswith("consumers.")  # they use only the public API
    )
    assert outside == []


def test_the_drawn_tree_is_the_class_tree() -> None:
    _import_everything()
    real = {
        cls.__name__: next(b.__name__ for b in cls.__bases__ if issubclass(b, ProcessorError))
        for cls in _subclasses(ProcessorError)
        if not cls.__name__.startswith("_")
    }
    assert _drawn() == real
