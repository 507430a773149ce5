"""The estimators end to end on hand-built crystals: the layer of the suite that needs no data folder.

The labels are the crystals' volumes per atom, a property a model can learn from the structure; nothing here
is a result, only the behaviour a user relies on (shapes, finite values, round trips, learning at all).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import RandomForestRegressor
from sklearn.pipeline import make_pipeline
from skorch.exceptions import NotInitializedError

from dim_sklearn import DeepInfoMaxFeaturizer, SiteNetRegressor, build_point_sets
from dim_sklearn.nn import DeepInfoMax, SiteNetEncoder
from dim_sklearn.pointsets import SiteBudgetBatchSampler, collate_point_sets
from dim_sklearn.pretrain import PretrainSettings, pretrain


@pytest.fixture(scope="module")
def volumes(hand_built):
    return np.array([s.volume / len(s) for s in hand_built])


@pytest.fixture(scope="module")
def fitted(hand_built):
    return DeepInfoMaxFeaturizer(max_epochs=2, validation_fraction=0.2, random_state=0).fit(hand_built)


def test_batches_hold_every_crystal_once_within_the_site_budget(hand_built):
    point_sets = build_point_sets(hand_built)
    sizes = [p.n_sites for p in point_sets]
    batches = list(SiteBudgetBatchSampler(sizes, 8, shuffle=True, random_state=0))
    assert sorted(i for b in batches for i in b) == list(range(len(hand_built)))
    assert all(sum(sizes[i] for i in b) <= 8 or len(b) == 1 for b in batches)
    batch = collate_point_sets([point_sets[i] for i in batches[0]])
    assert batch.n_crystals == len(batches[0])
    assert int(batch.site_crystal.max()) == batch.n_crystals - 1


def test_pretraining_lowers_the_dim_loss(hand_built):
    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder())
    settings = PretrainSettings(max_epochs=8, patience=8, batch_sites=16, validation_fraction=0.2)
    history, _ = pretrain(model, build_point_sets(hand_built), settings, random_state=0, device="cpu")
    assert len(history) == 8
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(np.isfinite(v) for row in history for v in row.values())


def test_featurizer_fits_transforms_and_round_trips_through_its_files(fitted, hand_built, tmp_path):
    X = fitted.transform(hand_built)
    assert X.shape == (32, 64) and np.isfinite(X).all()
    assert np.unique(X.round(6), axis=0).shape[0] == 32  # different crystals, different vectors
    fitted.save(tmp_path / "enc")
    assert np.array_equal(DeepInfoMaxFeaturizer.load(tmp_path / "enc").transform(hand_built), X)


def test_featurizer_in_a_pipeline_with_a_forest(fitted, hand_built, volumes):
    model = make_pipeline(fitted, RandomForestRegressor(n_estimators=20, random_state=0))
    model.fit(hand_built[::2], volumes[::2])
    assert model.predict(hand_built[1::2]).shape == (16,)


def test_regressor_fine_tunes_from_the_featurizer_and_predicts(fitted, hand_built, volumes):
    reg = SiteNetRegressor(encoder=fitted, max_epochs=15, batch_sites=32, random_state=0, train_split=None)
    reg.fit(hand_built, volumes)
    prediction = reg.predict(hand_built)
    assert prediction.shape == (32,) and np.isfinite(prediction).all()
    losses = reg.history[:, "train_loss"]
    assert losses[-1] < losses[0]


def test_fitting_on_nothing_or_without_targets_says_what_is_missing(hand_built):
    with pytest.raises(ValueError, match=r"^X holds 0 structures; SiteNetRegressor.fit needs at least one structure"):
        SiteNetRegressor().fit([], [])
    with pytest.raises(ValueError, match=r"^y is None; SiteNetRegressor.fit needs one target per structure of X$"):
        SiteNetRegressor().fit(hand_built, None)
    with pytest.raises(ValueError, match=r"^y is None; SiteNetRegressor.partial_fit needs one target"):
        SiteNetRegressor().partial_fit(hand_built)
    for empty in ([], pd.Series([], dtype=object), np.empty(0, dtype=object)):
        with pytest.raises(ValueError, match=r"^X holds 0 structures; DeepInfoMaxFeaturizer.fit needs at least one"):
            DeepInfoMaxFeaturizer(max_epochs=0).fit(empty)


def test_no_structures_to_transform_or_predict_give_empty_results(fitted, hand_built, volumes):
    assert fitted.transform([]).shape == (0, 64)
    reg = SiteNetRegressor(encoder=fitted, max_epochs=1, train_split=None, random_state=0).fit(
        hand_built[:4], volumes[:4]
    )
    prediction = reg.predict([])
    assert prediction.shape == (0,) and prediction.dtype == np.float32
    with pytest.raises(NotInitializedError):
        SiteNetRegressor().predict([])
