"""Running `dsp` in a subprocess the way the system tests do: one configuration file, one
environment, output captured."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["Dsp", "dsp_with"]

Dsp = Callable[..., subprocess.CompletedProcess[str]]


def dsp_with(
    config: Path,
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    timeout_s: float = 120,
) -> Dsp:
    """``dsp(*args)``: `python -m processor.cli ARGS --config CONFIG`, never raising on a
    non-zero exit (the tests read returncode, stdout and stderr)."""

    def dsp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "processor.cli", *args, "--config", str(config)],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=cwd,
        )

    return dsp
