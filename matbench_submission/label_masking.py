"""The label-masking study on real data (see dim_sklearn.study and docs/results/label_masking.md).

    python matbench_submission/label_masking.py            # the full study, resumable; writes docs/results/
    python matbench_submission/label_masking.py --quick    # one target, two sizes, two seeds (a minute)
    python matbench_submission/label_masking.py --report-only

Also ``dim-sklearn study``. Offline, the data sets are read from $MATMINER_DATA.
"""

from pathlib import Path

from dim_sklearn.study import main

if __name__ == "__main__":
    raise SystemExit(main(default_results=str(Path(__file__).resolve().parents[1] / "docs" / "results"),
                          prog="python matbench_submission/label_masking.py"))
