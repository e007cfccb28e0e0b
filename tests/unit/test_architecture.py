"""docs/architecture.md is kept true: every package of processor and consumers is named in
it, every class that implements a seam's protocol is named in that seam's row, the number of
seams it states is the number of rows, and every module its walk of a record names exists."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
import typing
from pathlib import Path
from typing import Any

import consumers
import processor
from processor.core.consumer import Consumer
from processor.core.dead_letters import DeadLetterSink
from processor.leases.model import LeaseStore
from processor.runtime.targets import ShardTarget
from processor.sources.base import StreamSource

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "architecture.md").read_text()

#: seam -> its protocol (the consumer seam's implementations are packages and functions,
#: named by package: their callables are checked by each consumer's tests)
SEAMS: dict[str, Any] = {
    "source": StreamSource,
    "lease store": LeaseStore,
    "consumer": Consumer,
    "dead-letter sink": DeadLetterSink,
    "shard target": ShardTarget,
}
_NUMBERS = {"three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}


def _modules() -> list[Any]:
    found = []
    for package in (processor, consumers):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__") or ".testing." in info.name:
                continue
            found.append(importlib.import_module(info.name))
    return found


def _shape(method: Any) -> tuple[int, frozenset[str]]:
    """A method's positional parameter count and the names its parameters' annotations use
    (``Sequence[DeadLetter]`` -> Sequence, DeadLetter): enough to tell ``send(entries)`` of a
    sink from ``send(message)`` of a child process."""
    params = list(inspect.signature(method).parameters.values())[1:]  # self
    positional = sum(1 for p in params if p.kind != p.KEYWORD_ONLY)
    names = frozenset(
        word for p in params for word in re.findall(r"[A-Za-z_]\w*", str(p.annotation))
    )
    return positional, names


def _methods(protocol: Any) -> dict[str, tuple[int, frozenset[str]]]:
    """A protocol's methods and their shapes."""
    return {
        name: _shape(member)
        for name, member in vars(protocol).items()
        if callable(member) and not name.startswith("_")
    }


def implementations(protocol: Any) -> set[str]:
    """Public classes whose methods match the protocol's, name and arity."""
    wanted = _methods(protocol)
    found = set()
    for module in [*_modules(), importlib.import_module("processor.testing.memory_source")]:
        for name, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            if name.startswith("_") or typing.Protocol in cls.__mro__:
                continue
            if all(
                callable(getattr(cls, method, None)) and _shape(getattr(cls, method)) == shape
                for method, shape in wanted.items()
            ):
                found.add(name)
    return found


def _rows() -> dict[str, str]:
    """The seams table's rows by seam."""
    section = PAGE.split("## The seams", 1)[1]
    lines = section.strip().splitlines()
    table = [line for line in lines[: lines.index("")] if line.startswith("|")]
    rows = {}
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = line
    return rows


def test_every_package_is_named() -> None:
    """Each package below processor and consumers appears as `name/` or `root/name/`."""
    missing = []
    for root in ("processor", "consumers"):
        for init in (ROOT / root).rglob("__init__.py"):
            package = init.parent
            if package == ROOT / root or "__pycache__" in package.parts:
                continue
            rel = package.relative_to(ROOT).as_posix()
            if f"`{package.name}/`" not in PAGE and f"`{rel}/`" not in PAGE:
                missing.append(rel)
    assert missing == []


def test_the_seam_count_is_the_table_and_every_implementation_is_in_its_row() -> None:
    rows = _rows()
    assert set(rows) == set(SEAMS)
    stated = re.search(r"(\w+) seams are small protocols", PAGE)
    assert stated is not None
    assert _NUMBERS[stated.group(1).lower()] == len(rows)
    for seam, protocol in SEAMS.items():
        if seam == "consumer":
            continue
        row = rows[seam]
        assert protocol.__name__ in row
        found = implementations(protocol)
        assert found, seam
        missing = sorted(name for name in found if f"`{name}`" not in row)
        assert missing == [], f"{seam}: {missing} implement {protocol.__name__}"


def test_the_implementation_finder_sees_a_new_implementation() -> None:
    """The check above is not vacuous: a class that implements a protocol is found."""

    class NewSource:
        def describe(self, stream_arn: str, *, children_of: str | None = None) -> Any: ...
        def child_shards(self, stream_arn: str, shard_id: str) -> Any: ...
        def get_iterator(self, *args: Any) -> Any: ...
        def get_records(self, iterator: str, *, limit: int, shard_id: str) -> Any: ...

    wanted = _methods(StreamSource)
    assert set(wanted) == {"describe", "child_shards", "get_iterator", "get_records"}
    assert _shape(NewSource.describe) == wanted["describe"]
    assert _shape(NewSource.get_records) == wanted["get_records"]


def test_every_module_the_walk_names_exists() -> None:
    walk = PAGE.split("## The walk of one record", 1)[1].split("## The packages", 1)[0]
    paths = set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", walk))
    assert paths
    missing = []
    for path in paths:
        candidates = [ROOT / path, ROOT / "processor" / path]
        if not any(c.exists() for c in candidates):
            missing.append(path)
    assert missing == []


def test_dispatchers_are_made_by_the_pipeline_only() -> None:
    """One pipeline factory (ADR 0027): only app/pipeline.py wires a Dispatcher from the
    settings; the entry points go through Pipeline. A redrive narrows the pipeline it is
    given (one route at a time, failures collected instead of stored): the one other."""
    makers = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "processor").rglob("*.py")
        if "testing" not in path.parts and re.search(r"\bDispatcher\(", path.read_text())
    )
    assert makers == ["processor/app/pipeline.py", "processor/replay/redrive.py"]


def test_every_retry_loop_is_made_by_the_one_retry_module() -> None:
    """One retry vocabulary (ADR 0027): processor/retries.py builds every tenacity
    Retrying of the engine and the built-in consumers."""
    makers = sorted(
        path.relative_to(ROOT).as_posix()
        for root in ("processor", "consumers")
        for path in (ROOT / root).rglob("*.py")
        if "testing" not in path.parts and re.search(r"\bRetrying\(", path.read_text())
    )
    assert makers == ["processor/retries.py"]


def test_no_private_name_crosses_modules() -> None:
    """A name with a leading underscore is its module's own: no module of processor or
    consumers imports one from another (private implementation modules, such as the native
    walk ``_images``, are modules, not names)."""
    crossing = []
    for root in ("processor", "consumers"):
        for path in (ROOT / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ImportFrom) or not node.module:
                    continue
                if node.module.split(".")[0] not in ("processor", "consumers"):
                    continue
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and not _is_module(f"{node.module}.{alias.name}"):
                        crossing.append(f"{path.relative_to(ROOT)}: {alias.name}")
    assert crossing == []


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ModuleNotFoundError, AttributeError):
        return False
