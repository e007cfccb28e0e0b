"""Cache-name templates: which names a change invalidates (pure: no I/O)."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processor import StreamRecord

__all__ = ["Template", "wire_scalar"]


def _fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def wire_scalar(value: Mapping[str, Any]) -> str:
    ((_tag, raw),) = value.items()
    return str(raw)


def _plain_format(text: str, aliases: Mapping[str, str]) -> str:
    """``text`` with dotted fields ("new.email") renamed to plain ones, for str.format_map
    (which would read "new.email" as attribute "email" of "new")."""
    out = []
    for literal, name, spec, conversion in string.Formatter().parse(text):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            out.append(
                "{"
                + aliases.get(name, name)
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Template:
    """One key template, with what its fields need."""

    text: str
    keys: tuple[str, ...]
    images: tuple[str, ...]  # "new", "old" or both: one name per image that has the fields
    image_attributes: tuple[tuple[str, str], ...]  # (field alias, attribute name)
    tenant: bool
    format: str  # text with image fields renamed to their aliases

    @classmethod
    def parse(cls, text: str) -> Template:
        keys: list[str] = []
        attributes: list[str] = []
        images: set[str] = set()
        tenant = False
        for name in _fields(text):
            prefix, dot, attribute = name.partition(".")
            if name == "tenant":
                tenant = True
            elif dot and prefix in ("new", "old", "image") and attribute:
                images.update(("new", "old") if prefix == "image" else (prefix,))
                attributes.append(name)
            elif dot:
                raise ValueError(f"{{{name}}}: image fields are new.ATTR, old.ATTR or image.ATTR")
            else:
                keys.append(name)
        if not (keys or attributes or tenant):
            raise ValueError("needs at least one field")
        if len({a.split(".", 1)[0] for a in attributes}) > 1:
            raise ValueError("use one of new., old. or image. per template")
        # aliases start with NUL: no key attribute or {tenant} field is named like that
        aliases = {name: f"\x00{index}" for index, name in enumerate(dict.fromkeys(attributes))}
        return cls(
            text,
            tuple(keys),
            tuple(sorted(images)),
            tuple((alias, name.split(".", 1)[1]) for name, alias in aliases.items()),
            tenant,
            _plain_format(text, aliases),
        )

    def names(self, record: StreamRecord, keys: Mapping[str, str]) -> list[str]:
        values: dict[str, str] = dict(keys)
        if self.tenant:
            if record.tenant is None:
                return []
            values["tenant"] = record.tenant
        if not self.images:
            return [self.format.format_map(values)]
        names = []
        for which in self.images:
            image = record.wire_new_image if which == "new" else record.wire_old_image
            if image is None:
                continue
            found = dict(values)
            for alias, attribute in self.image_attributes:
                value = image.get(attribute)
                if value is None:
                    break
                found[alias] = wire_scalar(value)
            else:
                names.append(self.format.format_map(found))
        return names
