"""SiteNetEnsemble on hand-built crystals: folds, blend, reproducibility, scikit-learn round trips, errors."""

import pickle

import numpy as np
import pytest
from crystals import six_crystals
from pymatgen.core import Lattice, Structure
from sklearn.base import clone

from dim_sklearn import SiteNetEnsemble, SiteNetRegressor
from dim_sklearn.composition import magpie_features
from dim_sklearn.ensemble import BLEND_GRID


@pytest.fixture(scope="module")
def crystals():
    """18 crystals: the six hand-built ones at three strains, so the folds differ in content."""
    out = []
    for strain in (0.0, 0.03, -0.03):
        for structure in six_crystals():
            strained = structure.copy()
            strained.apply_strain(strain)
            out.append(strained)
    return out


@pytest.fixture(scope="module")
def targets(crystals):
    """A target that composition mostly decides: mean atomic number, plus a little volume."""
    return np.array([np.mean([site.specie.Z for site in s]) + 0.01 * s.volume / len(s) for s in crystals])


def _ensemble(**params):
    params.setdefault("regressor", SiteNetRegressor(max_epochs=2, batch_sites=64))
    params.setdefault("n_folds", 3)
    params.setdefault("random_state", 0)
    params.setdefault("n_estimators", 20)
    return SiteNetEnsemble(**params)


@pytest.fixture(scope="module")
def fitted(crystals, targets):
    return _ensemble().fit(crystals, targets)


def test_one_network_per_fold_each_label_validates_exactly_one_network(fitted, crystals):
    assert len(fitted.estimators_) == 3
    valid = []
    for net in fitted.estimators_:
        folds = net.train_split.cv.test_fold
        valid.append(np.flatnonzero(folds == 0))
        assert set(np.unique(folds)) == {-1, 0}
        assert len(net.history) == 2 and "valid_loss" in net.history[-1]
    assert sorted(np.concatenate(valid).tolist()) == list(range(len(crystals)))
    assert len({net.random_state for net in fitted.estimators_}) == 3  # a different seed per network


def test_predict_blends_the_networks_mean_and_the_forest_at_the_chosen_share(fitted, crystals, targets):
    prediction = fitted.predict(crystals[:5])
    assert prediction.shape == (5,) and np.isfinite(prediction).all()
    networks = np.mean([net.predict(crystals[:5]) for net in fitted.estimators_], axis=0)
    forest = fitted.forest_.predict(magpie_features(crystals[:5]))
    np.testing.assert_allclose(prediction, fitted.weight_ * networks + (1 - fitted.weight_) * forest, rtol=1e-6)
    assert fitted.predict([]).shape == (0,)
    columns = fitted.transform(crystals[:5])  # the parts, as VotingRegressor.transform gives them
    assert columns.shape == (5, 4)
    np.testing.assert_allclose(columns[:, :3].mean(axis=1), networks, rtol=1e-6)
    np.testing.assert_allclose(columns[:, 3], forest)
    np.testing.assert_array_equal(fitted.blend(columns), prediction)
    assert fitted.transform([]).shape == (0, 4)


def test_the_share_is_the_best_out_of_fold_blend_drawn_toward_an_equal_blend(fitted, crystals, targets):
    out_of_bag = fitted.forest_.oob_prediction_.ravel()
    errors = [np.abs(w * fitted.oof_prediction_ + (1 - w) * out_of_bag - targets).mean() for w in BLEND_GRID]
    assert fitted.best_weight_ == BLEND_GRID[int(np.argmin(errors))]
    assert fitted.oof_mae_["best_blend"] == pytest.approx(min(errors))
    assert fitted.oof_mae_["best_blend"] <= min(fitted.oof_mae_["networks"], fitted.oof_mae_["forest"])
    n = len(crystals)  # 18 labels and a prior of 100: 18/118 of the way from an equal blend
    assert fitted.weight_ == pytest.approx(0.5 + (fitted.best_weight_ - 0.5) * n / (n + 100))
    as_is = _ensemble(blend_prior=0).fit(crystals, targets)
    assert as_is.weight_ == as_is.best_weight_ == fitted.best_weight_
    np.testing.assert_array_equal(as_is.oof_prediction_, fitted.oof_prediction_)


def test_out_of_fold_predictions_come_from_the_network_that_stopped_on_the_fold(fitted, crystals):
    for net in fitted.estimators_:
        held_out = np.flatnonzero(net.train_split.cv.test_fold == 0)
        np.testing.assert_allclose(
            fitted.oof_prediction_[held_out], net.predict([crystals[i] for i in held_out]), rtol=1e-5, atol=1e-6
        )


def test_without_composition_the_prediction_is_the_networks_mean(crystals, targets):
    model = _ensemble(composition=None).fit(crystals, targets)
    assert model.forest_ is None and model.weight_ == model.best_weight_ == 1.0 and set(model.oof_mae_) == {"networks"}
    networks = np.mean([net.predict(crystals) for net in model.estimators_], axis=0)
    np.testing.assert_allclose(model.predict(crystals), networks, rtol=1e-6)
    assert model.transform(crystals).shape == (len(crystals), 3)


def test_a_seed_ensemble_trains_every_network_on_every_label(crystals, targets):
    whole = SiteNetRegressor(max_epochs=2, batch_sites=64, lr_schedule="cosine", patience=None, train_split=None)
    model = _ensemble(regressor=whole, resampling="none", composition=None).fit(crystals, targets)
    assert len(model.estimators_) == 3 and len({net.random_state for net in model.estimators_}) == 3
    for net in model.estimators_:
        assert net.train_split is None and len(net.history) == 2 and "valid_loss" not in net.history[-1]
    assert model.oof_prediction_ is None and model.oof_mae_ == {} and model.forest_ is None
    networks = [net.predict(crystals) for net in model.estimators_]
    assert not np.allclose(networks[0], networks[1])  # the seeds differ, so do the networks
    np.testing.assert_allclose(model.predict(crystals), np.mean(networks, axis=0), rtol=1e-6)
    again = _ensemble(regressor=whole, resampling="none", composition=None).fit(crystals, targets)
    np.testing.assert_array_equal(again.predict(crystals), model.predict(crystals))


def test_a_seed_ensemble_refuses_a_forest_blend(crystals, targets):
    with pytest.raises(ValueError, match="no out-of-fold predictions to weigh the forest by: set composition=None"):
        _ensemble(resampling="none").fit(crystals, targets)


def test_same_seed_same_model_and_the_template_is_left_as_given(crystals, targets, fitted):
    template = SiteNetRegressor(max_epochs=2, batch_sites=64)
    before = template.get_params()
    again = _ensemble(regressor=template).fit(crystals, targets)
    np.testing.assert_array_equal(again.predict(crystals), fitted.predict(crystals))
    assert template.get_params().keys() == before.keys()
    assert template.train_split is before["train_split"] and template.random_state is None
    assert not hasattr(template, "module_")


def test_clone_and_pickle_round_trips(fitted, crystals):
    copy = clone(fitted)
    assert copy.get_params()["n_folds"] == 3 and not hasattr(copy, "estimators_")
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(crystals[:4]), fitted.predict(crystals[:4]))


def test_default_network_starts_from_the_shipped_encoder():
    assert SiteNetEnsemble().regressor is None
    net = SiteNetEnsemble()._template()
    assert net.encoder == "pretrained"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_folds": 1}, "n_folds must be an integer >= 2"),
        ({"composition": "oxides"}, "composition must be None or 'magpie'"),
        ({"resampling": "bagging"}, "resampling must be one of 'folds', 'none', got 'bagging'"),
        ({"regressor": "SiteNet"}, "regressor must be None or a SiteNetRegressor"),
        ({"n_estimators": 0}, "n_estimators must be an integer >= 1"),
        ({"blend_prior": -1.0}, "blend_prior must be a finite number >= 0"),
    ],
)
def test_bad_parameters_are_named(crystals, targets, params, message):
    with pytest.raises(ValueError, match=message):
        _ensemble(**params).fit(crystals, targets)


def test_bad_inputs_raise_clear_errors(crystals, targets):
    with pytest.raises(ValueError, match="needs at least 3"):
        _ensemble().fit(crystals[:2], targets[:2])
    with pytest.raises(ValueError, match="18 structures but y holds 17"):
        _ensemble().fit(crystals, targets[:-1])
    with pytest.raises(ValueError, match=r"X holds 0 structures; SiteNetEnsemble\.fit needs at least one"):
        _ensemble().fit([], [])
    with pytest.raises(ValueError, match=r"y is None; SiteNetEnsemble\.fit"):
        _ensemble().fit(crystals, None)
    with pytest.raises(ValueError, match="NaN"):
        _ensemble().fit(crystals, np.where(np.arange(18) == 3, np.nan, targets))


def test_magpie_features_of_structures():
    salt = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    table = magpie_features([salt, salt])
    assert table.shape == (2, 132) and np.isfinite(table).all()
    assert magpie_features([]).shape == (0, 132)
