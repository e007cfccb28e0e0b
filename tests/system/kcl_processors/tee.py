"""A child that records the conversation: ``tee.py LOG -- COMMAND...``.

It runs COMMAND (a real amazon_kclpy processor) and passes every line both ways, writing
``> line`` (daemon to child) and ``< line`` (child to daemon) to LOG: the wire, as the
conformance test reads it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

log_path = Path(sys.argv[1])
command = sys.argv[sys.argv.index("--") + 1 :]
lock = threading.Lock()


def note(direction: str, line: bytes) -> None:
    with lock, log_path.open("ab") as log:
        log.write(direction.encode() + b" " + line.rstrip(b"\n") + b"\n")


child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
assert child.stdin is not None
assert child.stdout is not None


def upstream() -> None:
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip():
            note("<", line)
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()


reader = threading.Thread(target=upstream)
reader.start()
for line in sys.stdin.buffer:
    note(">", line)
    child.stdin.write(line)
    child.stdin.flush()
child.stdin.close()
reader.join()
sys.exit(child.wait())
