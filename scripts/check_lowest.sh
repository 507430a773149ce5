#!/usr/bin/env bash
# The lower bounds in pyproject.toml, tried: a fresh virtual environment with the lowest allowed version of every
# direct dependency (uv's --resolution lowest-direct), then the unit layer of the tests in it.
#   bash scripts/check_lowest.sh [FOLDER]   # the environment goes to FOLDER (default: a temporary folder, removed)
# torch is the exception: only the CPU build of torch 2.13.0 installs here without CUDA packages, so it is installed
# first, pinned, and left out of the resolution; its lower bound is not exercised. The tests of the experiments
# (demo, study, Matbench), of the documentation and the data layer need more than the library, and are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
if [ $# -gt 0 ]; then
  dir=$1
  mkdir -p "$dir"
else
  dir=$(mktemp -d -t dim-sklearn-lowest-XXXXXX)
  trap 'rm -rf "$dir"' EXIT
fi
python=${PYTHON:-python3}
"$python" -m venv "$dir/venv"
py="$dir/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet "torch==2.13.0" uv pytest
"$py" -m pip install --quiet --no-deps -e "$repo"
# The package's runtime requirements except torch, as written in pyproject.toml.
"$py" - > "$dir/requirements.txt" <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement

for line in requires("dim-sklearn"):
    requirement = Requirement(line)
    if requirement.marker is None and requirement.name != "torch":
        print(requirement)
PY
echo "lowest allowed versions of:" $(cat "$dir/requirements.txt")
"$dir/venv/bin/uv" pip install --python "$py" --resolution lowest-direct -r "$dir/requirements.txt"
"$py" - "$dir/requirements.txt" <<'PY'
import sys
from importlib.metadata import version
from packaging.requirements import Requirement

import torch

assert torch.__version__ == "2.13.0+cpu", f"torch changed to {torch.__version__}"
names = [Requirement(line.strip()).name for line in open(sys.argv[1]) if line.strip()]
print("installed:", ", ".join(f"{name} {version(name)}" for name in ["torch", *names]))
PY
cd "$repo"
"$py" -m pytest -m "not data and not slow" -p no:cacheprovider -q \
  --ignore=tests/test_demo.py --ignore=tests/test_study.py --ignore=tests/test_matbench.py \
  --ignore=tests/test_examples.py --ignore=tests/test_learning.py --ignore=tests/test_docs.py
