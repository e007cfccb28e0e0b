"""`dsp run` as a separate process for the end-to-end benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

START_UP_S = 3.0  # imports, the lease table, the first poll


@contextmanager
def dsp_run(
    endpoint: str,
    config: str,
    *,
    env: dict[str, str] | None = None,
    stderr: Path | None = None,
    args: Sequence[str] = (),
    start_up_s: float = START_UP_S,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `dsp run` with ``config`` (TOML without ``[dead_letter]``, which goes to a temporary
    file) against the moto server at ``endpoint`` (and ``env``, e.g. another streams endpoint;
    its logs to ``stderr`` if given; more command-line ``args``); yields once it has started
    (``start_up_s`` later); stops it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dsp.toml"
        path.write_text(f'{config}\n[dead_letter]\npath = "{Path(tmp) / "dl.jsonl"}"\n')
        log = stderr.open("w") if stderr is not None else None
        worker = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "run", "--config", str(path), *args],
            env={**os.environ, "DSP_AWS__ENDPOINT_URL": endpoint, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=log or subprocess.DEVNULL,
        )
        try:
            time.sleep(start_up_s)
            yield worker
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            if log is not None:
                log.close()
