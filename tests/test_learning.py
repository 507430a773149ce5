"""Does the shipped encoder give a forest better features than the same encoder untrained, on the embedded set?

Protocol (``experiments.protocol``, the demo's): the 2,000 structures of the embedded ``mp_crysxpp_2k`` set,
which the shipped encoder's pretraining never saw, split by ``holdout_split`` (1,600 training, 400 test); the
64-d vectors of the shipped encoder (``DeepInfoMaxFeaturizer.from_pretrained()``) and of the untrained encoder
as the demo defines it (``untrained_encoder``: ``max_epochs=0``, ``random_state=0``, the default radial-basis
distance input); at 50, 250 and 1,000 labels, 10 label subsets each from ``streamed_subsets`` (seed 0); a
RandomForestRegressor (100 trees, ``random_state`` = the subset's number) per subset and feature set, scored by
the mean absolute error on the 400 test structures, averaged over the subsets.

What the evidence supports: the demo measured the shipped vectors 7-20% below this untrained encoder at every
size (DIM RF 0.510/0.443/0.392/0.317 against 0.547/0.517/0.471/0.398 eV/atom at 50/100/250/1,000 labels, 5
subsets), so the test asks for lower error at every size and at least 10% lower at 1,000 labels. It claims
nothing about the paper's raw-distance untrained encoder (``n_rbf=0``): the label-masking study (25 subsets,
docs/results/label_masking.md, "The shipped encoder") finds the shipped vectors level with it on mp_crysxpp
(+3.3% to -1.9%). About 2 minutes on 2 CPU cores: marked slow.
"""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor

from dim_sklearn import DeepInfoMaxFeaturizer, load_dataset
from experiments.protocol import holdout_split, streamed_subsets, untrained_encoder


@pytest.mark.slow
def test_shipped_vectors_beat_the_demos_untrained_encoder_with_a_forest():
    structures, frame = load_dataset("mp_crysxpp_2k")
    y = frame["formation_energy_per_atom"].to_numpy(dtype=float)
    train, test = holdout_split(np.arange(len(y)))
    assert (len(train), len(test)) == (1600, 400)
    X = {
        "shipped": DeepInfoMaxFeaturizer.from_pretrained().transform(structures),
        "untrained": untrained_encoder(structures[:1]).transform(structures),
    }
    mae = {name: {} for name in X}
    for n, subsets in streamed_subsets(train, (50, 250, 1000), repeats=10).items():
        for name, features in X.items():
            mae[name][n] = np.mean(
                [
                    np.abs(
                        RandomForestRegressor(random_state=k, n_jobs=-1).fit(features[s], y[s]).predict(features[test])
                        - y[test]
                    ).mean()
                    for k, s in enumerate(subsets)
                ]
            )
    change = {n: mae["shipped"][n] / mae["untrained"][n] - 1 for n in mae["shipped"]}
    assert all(c < 0 for c in change.values()) and change[1000] < -0.10, mae
