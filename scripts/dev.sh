#!/usr/bin/env bash
# Set up a virtual environment in .venv (idempotent), then run a task in it.
#   bash scripts/dev.sh demo     # the main job, on the data set embedded in the package (no data folder needed)
#   bash scripts/dev.sh test     # ruff (lint, format), mypy, then the test suite (fast set; pytest options after it,
#                                # e.g. -m slow; -m 'not data' runs the layer that needs no data folder)
#   bash scripts/dev.sh lint     # ruff and mypy only
#   bash scripts/dev.sh bench    # the benchmarks in benchmarks/
#   bash scripts/dev.sh wheel    # build the sdist and wheel, install the wheel into a fresh environment, use it
#                                # from outside the checkout (scripts/check_wheel.py; CI runs it)
# Data for the other sets (tests, benchmarks, `--dataset` runs): set DIM_SKLEARN_DATA or MATMINER_DATA to a
# folder of data files; when neither is set and ../shared/data exists beside the checkout, that folder is used.
set -euo pipefail
cd "$(dirname "$0")/.."
task=${1:-demo}
shift || true

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.dim-sklearn-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first and pinned: the CPU build; an unpinned torch pulls CUDA packages.
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  # docs: tests/test_docs.py builds the site; experiments: the demo's and the study's plots and the study's
  # CHGNet baseline (the experiments/ package itself runs from the checkout)
  .venv/bin/python -m pip install --quiet -e ".[dev,docs,experiments]"
  # matbench 0.6 pins an ancient stack; its real needs are already installed above.
  .venv/bin/python -m pip install --quiet --no-deps "matbench==0.6"
  touch "$stamp"
fi

if [ -z "${DIM_SKLEARN_DATA:-}${MATMINER_DATA:-}" ] && [ -d ../shared/data ]; then
  export MATMINER_DATA="$(cd ../shared/data && pwd)"
fi
lint() { .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy; }
case "$task" in
  demo)  PYTHONWARNINGS=ignore exec .venv/bin/python -m experiments demo "$@" ;;
  lint)  lint ;;
  test)  lint && exec .venv/bin/python -m pytest "$@" ;;
  bench) for b in benchmarks/*.py; do .venv/bin/python "$b" "$@"; done ;;
  wheel) exec .venv/bin/python scripts/check_wheel.py "$@" ;;
  *)     echo "unknown task '$task' (demo | test | lint | bench | wheel)" >&2; exit 2 ;;
esac
