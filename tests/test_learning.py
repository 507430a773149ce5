"""Does pretraining pay? RandomForest on DIM features vs on the untrained encoder's features.

Real data (mp_cs419 formation energy), the README demo's protocol: pretraining on the
training split's structures only (no labels), five random labelled subsets per size,
the same subsets and forests for both feature sets, test on the held-out split.
About 10 minutes on 2 CPU cores (40 epochs): marked slow, run with ``-m slow``.
"""

import pytest

from dim_sklearn.demo import compare_features


@pytest.mark.slow
def test_dim_features_beat_untrained_features_with_few_labels(tmp_path):
    table, info = compare_features(
        label_counts=(50, 100, 250, 1000), repeats=5, max_epochs=40, cache_dir=str(tmp_path), verbose=False
    )
    assert info["n_train"] == 2561 and info["n_test"] == 641
    for labels in (50, 100, 250):
        assert table.loc[labels, "DIM MAE"] < table.loc[labels, "untrained MAE"], table
    # As in the paper, the gain shrinks with more labels (measured: -9.9% at 50, +2.1% at 1,000).
    assert table.loc[50, "change %"] < table.loc[1000, "change %"]
