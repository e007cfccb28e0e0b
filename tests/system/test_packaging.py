"""The wheel a user installs works on its own: built, installed into a fresh virtualenv, run."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        list(args), capture_output=True, text=True, timeout=600, check=False, cwd=cwd, env=env
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_and_runs_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    """`python -m build` makes a wheel; in a fresh venv, `dsp --version`, `dsp check-config`
    on the example and `import processor.testing` work, with the version from one place, and
    the native image walk is built into it."""
    run(sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(ROOT))
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    run(str(python), "-m", "pip", "install", "--quiet", str(wheel))
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert run(str(env / "bin" / "dsp"), "--version").strip() == f"dsp {version}"
    example = ROOT / "config" / "production.example.toml"
    # the example's batch_write transform is the user's own module: check-config imports it,
    # as a run would
    user_code = tmp_path / "user-code" / "myservice"
    user_code.mkdir(parents=True)
    (user_code / "__init__.py").write_text("")
    (user_code / "projections.py").write_text("def order_by_customer(record):\n    return None\n")
    out = run(
        str(env / "bin" / "dsp"),
        "check-config",
        "--offline",
        "--config",
        str(example),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(user_code.parent)},
    )
    assert "ok (3 routes;" in out
    imported = run(
        str(python),
        "-c",
        "import processor, processor.testing, consumers.webhook, processor.core.values as v; "
        "print(processor.__version__, processor.testing.__file__, v.NATIVE)",
        cwd=tmp_path,
    )
    installed_version, location, native = imported.split()
    assert installed_version == version
    assert location.startswith(str(env))  # the installed copy, not this source tree
    assert native == "True"  # the wheel carries the compiled image walk (ADR 0020)


def test_make_says_which_python_it_needs_before_it_builds_anything(tmp_path: Path) -> None:
    """`make` with a Python older than 3.11 (macOS' 3.9, Ubuntu 22.04's 3.10) stops at once
    with what to do, instead of pip's resolver error halfway through the install."""
    for name in ("Makefile", "pyproject.toml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "processor" / "core").mkdir(parents=True)
    (tmp_path / "processor" / "core" / "_images.c").write_text("")
    old = tmp_path / "python3.9"
    old.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "Python 3.9.6"; exit 0; fi\n'
        "exit 1\n"  # `-c 'sys.exit(sys.version_info < (3, 11))'` fails, as on 3.9
    )
    old.chmod(0o755)
    done = subprocess.run(
        ["make", "install", f"PY={old}"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "dsp needs Python 3.11 or newer; " in done.stdout
    assert "is Python 3.9.6" in done.stdout
    assert "make PY=python3.11" in done.stdout
    assert not (tmp_path / ".venv").exists()
