"""The JSON document a webhook receives for one record (see the package docstring)."""

from __future__ import annotations

import msgspec

from processor import StreamRecord, plain_image

__all__ = ["encode_body"]

_encoder = msgspec.json.Encoder(decimal_format="number")


def encode_body(record: StreamRecord, *, table_name: str) -> bytes:
    """The exact bytes POSTed for ``record``."""
    created = record.approximate_creation_time
    return _encoder.encode(
        {
            "event_id": record.event_id,
            "event_name": record.event_name.value,
            "table_name": record.table_name or table_name,
            "tenant": record.tenant,
            "keys": plain_image(record.wire_keys),
            "new_image": plain_image(record.wire_new_image),
            "old_image": plain_image(record.wire_old_image),
            "sequence_number": record.sequence_number,
            "approximate_creation_time": created.isoformat().replace("+00:00", "Z")
            if created
            else None,
        }
    )
