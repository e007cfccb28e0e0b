"""A window consumer for test_windows_crash: counts records per key in each window and, on a
final call, writes the aggregate to $WINDOW_OUT (JSON lines; a key per window and shard, so a
repeated emission after a crash only repeats a line)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from processor import StreamRecord
from processor.core.windows import Window


def count(records: Sequence[StreamRecord], window: Window) -> dict[str, Any]:
    state = dict(window.state)
    for record in records:
        key = record.keys["pk"]
        state[key] = state.get(key, 0) + 1
    time.sleep(0.05)  # slow enough for a SIGKILL to land inside a window
    if window.is_final:
        line = {"shard": window.shard_id, "start": window.start, "counts": state}
        with open(os.environ["WINDOW_OUT"], "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
        return {}
    return state
