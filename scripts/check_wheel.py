"""Build the sdist and the wheel, check what they hold, install the wheel as a user would and use it.

1. ``python -m build`` makes the sdist and, from it, the wheel; a second wheel built straight from the checkout
   must hold the same files, byte for byte.
2. The wheel must hold the library, the shipped encoders, the embedded data set with its licence note, the
   licence and the ``dim-sklearn`` command, and nothing else (no tests, docs, experiments, scripts, benchmarks);
   the sdist the same sources plus the citation file and the changelog, no tests.
3. A fresh virtual environment in a temporary folder gets ``torch`` (the CPU build of the development set-up,
   through a constraint, not a requirement of the package) and then the wheel with its runtime dependencies only.
4. From a folder outside the repository, with no data folder set, ``wheel_smoke.py`` runs what a user runs
   first (the command line on a few CIFs, pretraining on a folder of CIFs, the shipped encoder, the embedded set,
   a short fine-tuning, a pickle round trip).

    python scripts/check_wheel.py              # prints the wheel's size and contents and pip's last lines
    python scripts/check_wheel.py --keep DIR   # keep the distributions, the environment and the smoke files in DIR
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the CPU build scripts/dev.sh installs; an unpinned torch pulls CUDA packages
PACKAGE = "dim_sklearn"
REQUIRED = (
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/cli.py",
    f"{PACKAGE}/encoder/shipped/dim-38k/config.json",
    f"{PACKAGE}/encoder/shipped/dim-38k/encoder.safetensors",
    f"{PACKAGE}/data/mp_crysxpp_2k.json.gz",
    f"{PACKAGE}/data/README.md",
)
LICENCE_NOTE = "CC BY 4.0"  # the embedded set's licence, stated in data/README.md
NOT_SHIPPED = ("tests", "docs", "experiments", "scripts", "benchmarks", "matbench_submission", ".ci")
SDIST_EXTRAS = ("LICENSE", "README.md", "CHANGELOG.md", "CITATION.cff", "pyproject.toml")


def project_version() -> str:
    """The version written in ``pyproject.toml``."""
    found = re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit("pyproject.toml gives no version")
    return found.group(1)


def wheel_problems(names: Iterable[str], read: dict[str, bytes], version: str) -> list[str]:
    """What is wrong with a wheel of ``names``, given the text of some of its members in ``read``; empty if nothing.

    ``read`` holds ``data/README.md``, the dist-info ``METADATA`` and ``entry_points.txt``, when present.
    """
    names = list(names)
    info = f"{PACKAGE}-{version}.dist-info"
    problems = [f"missing {name}" for name in (*REQUIRED, f"{info}/licenses/LICENSE") if name not in names]
    for name in names:
        parts = name.split("/")
        if parts[0] not in (PACKAGE, info) or (parts[0] == PACKAGE and parts[1] in NOT_SHIPPED):
            problems.append(f"not part of the package: {name}")
    note = read.get(f"{PACKAGE}/data/README.md", b"").decode()
    if note and LICENCE_NOTE not in note:
        problems.append(f"the embedded set's note does not state its licence ({LICENCE_NOTE})")
    metadata = read.get(f"{info}/METADATA", b"").decode()
    if f"\nVersion: {version}\n" not in metadata:
        problems.append(f"METADATA does not give version {version}")
    if "dim-sklearn = dim_sklearn.cli:main" not in read.get(f"{info}/entry_points.txt", b"").decode():
        problems.append("no dim-sklearn console script")
    return problems


def sdist_problems(names: Iterable[str], version: str) -> list[str]:
    """What is wrong with an sdist of ``names`` (paths inside it); empty if nothing."""
    root = f"{PACKAGE}-{version}"
    names = [name.removeprefix(root + "/") for name in names]
    problems = [f"missing {name}" for name in (*REQUIRED, *SDIST_EXTRAS) if name not in names]
    problems += [f"not part of the sdist: {name}" for name in names if name.split("/")[0] in NOT_SHIPPED]
    return problems


def _wheel_members(wheel: Path) -> dict[str, str]:
    """Each member of ``wheel`` and the sha256 of its bytes."""
    with zipfile.ZipFile(wheel) as z:
        return {name: hashlib.sha256(z.read(name)).hexdigest() for name in z.namelist()}


def summary(wheel: Path) -> list[str]:
    """The wheel's size and what it holds, grouped."""
    with zipfile.ZipFile(wheel) as z:
        infos = z.infolist()
    groups: dict[str, list[int]] = {}
    for item in infos:
        parts = item.filename.split("/")
        if parts[0].endswith(".dist-info"):
            key = "metadata (.dist-info: METADATA, RECORD, LICENSE, entry points)"
        elif item.filename.endswith(".py"):
            key = "Python modules"
        elif parts[1:3] == ["encoder", "shipped"]:
            key = f"shipped encoder {parts[3]}"
        else:
            key = "embedded data set and its note (data/)"
        groups.setdefault(key, []).append(item.file_size)
    lines = [f"wheel {wheel.name}: {wheel.stat().st_size / 1000:.0f} kB, {len(infos)} files"]
    lines += [f"  {len(sizes):3d} files, {sum(sizes) / 1000:7.0f} kB unpacked  {key}" for key, sizes in groups.items()]
    return lines


def _run(command: list[str], *, quiet: bool = False, **kwargs) -> None:
    """Run ``command``, echoed; ``quiet``: show its output only if it fails. Exit on a non-zero status."""
    print("$", " ".join(map(str, command)), flush=True)
    result = subprocess.run(command, capture_output=quiet, text=True, **kwargs)
    if result.returncode:
        if quiet:
            print(result.stdout[-5000:], result.stderr[-5000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"failed with status {result.returncode}: {' '.join(map(str, command))}")


def build(outdir: Path) -> tuple[Path, Path]:
    """Build the sdist and the wheel from it into ``outdir``; check a wheel built straight from the tree matches."""
    _run([sys.executable, "-m", "build", "--outdir", str(outdir / "dist"), str(REPO)], quiet=True)
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir / "direct"), str(REPO)], quiet=True)
    (sdist,) = (outdir / "dist").glob("*.tar.gz")
    (wheel,) = (outdir / "dist").glob("*.whl")
    (direct,) = (outdir / "direct").glob("*.whl")
    if _wheel_members(wheel) != _wheel_members(direct):
        raise SystemExit("the wheel built from the sdist differs from the wheel built from the checkout")
    return sdist, wheel


def check_contents(sdist: Path, wheel: Path, version: str) -> None:
    """Raise SystemExit listing what is wrong with the two distributions."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        wanted = [n for n in names if n.endswith(("data/README.md", "/METADATA", "/entry_points.txt"))]
        read = {name: z.read(name) for name in wanted}
    with tarfile.open(sdist) as t:
        sdist_names = [member.name for member in t.getmembers() if member.isfile()]
    problems = wheel_problems(names, read, version) + sdist_problems(sdist_names, version)
    if problems:
        raise SystemExit("the distributions are wrong:\n  " + "\n  ".join(problems))


def install(wheel: Path, venv: Path) -> Path:
    """A fresh virtual environment with torch's CPU build, then the wheel and its runtime dependencies; its python."""
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    constraint = venv / "constraints.txt"
    constraint.write_text(TORCH + "\n")
    _run([str(python), "-m", "pip", "install", "--quiet", TORCH], quiet=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-c", str(constraint), str(wheel)],
        capture_output=True,
        text=True,
    )
    noise = ("is ignored: it is neither", "━")  # this machine's pip configuration; progress bars
    output = [line for line in (result.stdout + result.stderr).splitlines() if not any(n in line for n in noise)]
    print(f"$ pip install -c constraints.txt {wheel.name}  (last lines)", *output[-6:], sep="\n  ", flush=True)
    if result.returncode:
        raise SystemExit(f"pip install of the wheel failed with status {result.returncode}")
    return python


def smoke(python: Path, workdir: Path) -> None:
    """Run ``wheel_smoke.py`` in ``workdir`` with the environment's python, no data folder and no checkout path."""
    workdir.mkdir()
    shutil.copy(REPO / "scripts" / "wheel_smoke.py", workdir / "wheel_smoke.py")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DIM_SKLEARN_DATA", "MATMINER_DATA")}
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    env["DIM_SKLEARN_CHECKOUT"] = str(REPO)  # the smoke script checks the package is not imported from here
    _run([str(python), "wheel_smoke.py"], cwd=workdir, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep", type=Path, default=None, help="folder to keep everything in (default: a temporary one)"
    )
    args = parser.parse_args()
    version = project_version()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dim-sklearn-wheel-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        sdist, wheel = build(root)
        check_contents(sdist, wheel, version)
        print(*summary(wheel), f"sdist {sdist.name}: {sdist.stat().st_size / 1000:.0f} kB", sep="\n", flush=True)
        python = install(wheel, root / "venv")
        smoke(python, root / "outside")
    print(f"wheel check passed in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
