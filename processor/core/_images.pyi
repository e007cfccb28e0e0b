"""The native walk from DynamoDB JSON to TypeDeserializer's values (_images.c, ADR 0020)."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

def configure(
    create_decimal: Callable[[str], Decimal],
    a2b_base64: Callable[..., bytes],
    binary: Callable[[bytes], Any],
    typed: type,
    unset: object,
    fields: tuple[object, ...],
    /,
) -> None: ...
def walk(image: Any, /) -> dict[str, Any]: ...
def walk_typed(image: Any, /) -> dict[str, Any]: ...
