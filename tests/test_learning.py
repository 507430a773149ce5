"""Does the shipped encoder give a forest better features than the same encoder untrained?

The demo's protocol on the whole embedded set (1,600 training, 400 test structures that its pretraining never
saw), RandomForest only, 10 label subsets per size. About 2 minutes on 2 CPU cores: marked slow.
"""

import pytest

from dim_sklearn.demo import run_demo


@pytest.mark.slow
def test_shipped_vectors_beat_the_untrained_encoder_with_a_forest():
    table, info = run_demo(label_counts=(50, 250, 1000), repeats=10, finetune_counts=(), verbose=False)
    assert (info["n_train"], info["n_test"]) == (1600, 400)
    change = table["DIM MAE"] / table["untrained MAE"] - 1
    assert (change < 0).all() and change[1000] < -0.10, table  # measured: see docs/getting-started.md
