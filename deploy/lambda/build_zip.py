"""Build the Lambda deployment package: `make lambda-zip` (python deploy/lambda/build_zip.py).

dsp and every dependency, installed for this interpreter with pip's --target, plus
deploy/lambda/lambda.toml at the root (DSP_CONFIG=lambda.toml in template.yaml), zipped in a
fixed order. `rich` and what only it needs are left out: it draws `dsp replay`'s progress bar
in a terminal, which Lambda has not, and structlog imports it at start when it is there
(about 60 ms of every cold start). Every module is compiled to bytecode in the package
(hash-based .pyc files that are not checked against their source, PEP 552): Lambda's task
directory is read-only, so without them every cold start compiles every module it imports
again (1.35 s instead of 0.6 s, measured). It says whether the native image walk (ADR 0020) is
inside, for which architecture, and which glibc it needs: Lambda's python3.11 runtime runs
on Amazon Linux 2 (glibc 2.26). Where it cannot load, dsp uses the Python walk, which gives
the same values, only slower.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_GLIBC = (2, 26)  # Amazon Linux 2, the python3.11 runtime's OS
#: packages the function never imports: rich (the replay progress bar) and its own dependencies
LEFT_OUT = ("rich", "markdown_it", "markdown_it_py", "mdurl", "pygments")


def glibc_needed(library: Path) -> tuple[int, ...] | None:
    """The newest GLIBC_x.y[.z] symbol version the library asks for (objdump), if it can tell."""
    objdump = shutil.which("objdump")
    if objdump is None:
        return None
    dump = subprocess.run(
        [objdump, "-T", str(library)], capture_output=True, text=True, check=False
    )
    versions = [tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_([\d.]+\d)", dump.stdout)]
    return max(versions) if versions else (0,)


def native_walk(tree: Path) -> str:
    """One line on the native image walk in the package."""
    found = sorted((tree / "processor" / "core").glob("_images*.so"))
    if not found:
        return "native image walk: not in the package (no compiler): the Python walk is used"
    library = found[0]
    tag = library.name.split(".")[1] if library.name.count(".") >= 2 else "?"
    needed = glibc_needed(library)
    if needed is None:
        return f"native image walk: included ({tag}); its glibc needs were not checked (no objdump)"
    verdict = (
        "loads on Lambda's python3.11 runtime"
        if needed <= LAMBDA_GLIBC
        else "does NOT load on Lambda's python3.11 runtime (glibc 2.26): the Python walk is used"
    )
    return (
        f"native image walk: included ({tag}, needs glibc {'.'.join(map(str, needed))}): "
        f"{verdict}; "
        "on another architecture the Python walk is used"
    )


def package(tree: Path) -> str:
    """Install the function's code into ``tree`` (what the zip holds); one line on its
    native image walk."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target",
         str(tree), str(ROOT)],
        check=True,
    )  # fmt: skip
    for path in list(tree.iterdir()):
        if path.name.lower().split("-")[0] in LEFT_OUT:  # the package, its dist-info
            shutil.rmtree(path)
    for script in ("pygmentize", "markdown-it"):
        (tree / "bin" / script).unlink(missing_ok=True)
    shutil.copy(ROOT / "deploy" / "lambda" / "lambda.toml", tree / "lambda.toml")
    # unchecked-hash: the zip keeps file times to 2 s, so a timestamp check could find every
    # .pyc stale; a hash-based one is also the same from one build to the next
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0",
         "--invalidation-mode", "unchecked-hash", str(tree)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return native_walk(tree)


def build(out: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="dsp-lambda-") as scratch:
        tree = Path(scratch) / "package"
        walk = package(tree)
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in tree.rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(tree).as_posix())
        return walk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "lambda.zip")
    parser.add_argument(
        "--tree", type=Path, help="install into this directory instead (the zip's content)"
    )
    args = parser.parse_args()
    if args.tree is not None:
        print(package(args.tree))
        return 0
    walk = build(args.out)
    size = args.out.stat().st_size / 1e6
    print(f"{args.out}: {size:.1f} MB (Lambda's limit: 50 MB zipped, 250 MB unzipped)")
    print(walk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
