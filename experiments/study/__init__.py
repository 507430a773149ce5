"""The label-masking study: does Deep InfoMax pretraining pay, against what, by how much.

For each target, DIM pretrains on the training structures of a split (no
labels); then, with 50-1,000 labelled training structures over repeated label
subsets, scikit-learn models on DIM features are compared with the untrained
encoder and matminer's hand-crafted features, and ``SiteNetRegressor`` fine-tuned
from DIM with one fine-tuned from scratch, all on the whole test split.
Run it with ``python -m experiments study`` or ``python matbench_submission/label_masking.py``.
"""

from ..protocol import FULL, QUICK, TARGETS, Budget, Target
from .cli import main
from .report import write_report
from .runner import run_study

__all__ = ["FULL", "QUICK", "TARGETS", "Budget", "Target", "main", "run_study", "write_report"]
