"""The label-masking study on real data (see experiments.study and docs/results/label_masking.md).

    python matbench_submission/label_masking.py            # the full study, resumable; writes docs/results/
    python matbench_submission/label_masking.py --quick    # one target, two sizes, two seeds (a minute)
    python matbench_submission/label_masking.py --report-only

Also ``python -m experiments study`` from the repository root. Offline, the data sets are read from
$MATMINER_DATA.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's experiments/ package

from experiments.study import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python matbench_submission/label_masking.py"))
