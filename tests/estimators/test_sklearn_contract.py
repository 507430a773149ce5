"""scikit-learn's estimator contract, checked on structures.

scikit-learn's own checks feed 2-D numeric arrays, which these estimators refuse (see
``test_sklearn_checks.py``); the tests here check the same promises on small hand-built crystals: fitting is
repeatable and leaves its parameters and its input alone, outputs do not depend on the order or company of the
structures, estimators survive pickling, cloning and pipelines, and edge-case inputs give a documented result or
a clear error.

Outputs are compared exactly where the same numbers go through the same batches (fitting again, pickling,
cloning). Where the batches differ (other structures beside one, another order), the crystal vectors and
predictions agree to ``BATCHING_ATOL``: the encoder pads every crystal of a batch to its largest supercell, so
float32 sums run in another order.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import joblib
import numpy as np
import pandas as pd
import pytest
from crystals import six_crystals
from pymatgen.core import Lattice, Structure
from scipy import sparse
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.utils.validation import check_is_fitted
from skorch.exceptions import NotInitializedError

from dim_sklearn import DeepInfoMaxFeaturizer, SiteNetRegressor, StructureError

BATCHING_ATOL = 1e-5
"""How far a crystal's vector or prediction may move when other structures share its batches (float32 sums)."""

TINY = dict(
    max_epochs=2,
    width=16,
    local_dim=8,
    global_width=16,
    global_dim=8,
    n_rbf=4,
    batch_sites=8,
    validation_fraction=0.2,
    random_state=0,
    device="cpu",
)
"""A featurizer that pretrains in a fraction of a second on ``six_crystals()``."""

ESTIMATORS: dict[str, Callable[[], BaseEstimator]] = {
    "pretraining featurizer": lambda: DeepInfoMaxFeaturizer(**TINY),
    "shipped featurizer": lambda: DeepInfoMaxFeaturizer.from_pretrained(device="cpu"),
    "regressor": lambda: SiteNetRegressor(max_epochs=2, batch_sites=8, random_state=0, device="cpu"),
    "regressor on the shipped encoder": lambda: SiteNetRegressor(
        encoder="pretrained", max_epochs=2, batch_sites=8, random_state=0, device="cpu"
    ),
}
FEATURIZERS = [name for name in ESTIMATORS if "featurizer" in name]
REGRESSORS = [name for name in ESTIMATORS if "regressor" in name]


@pytest.fixture
def crystals() -> list[Structure]:
    return six_crystals()


@pytest.fixture
def y() -> np.ndarray:
    """Volume per atom of ``six_crystals()``: a target the structures determine."""
    return np.array([s.volume / len(s) for s in six_crystals()])


@pytest.fixture
def no_pretraining(monkeypatch):
    """Pretraining fails the test: a featurizer given an encoder must not train."""

    def refuse(*args, **kwargs):
        raise AssertionError("pretrained although an encoder was given")

    monkeypatch.setattr("dim_sklearn.featurizer.pretrain", refuse)


def outputs(estimator: BaseEstimator, X: list[Structure]) -> np.ndarray:
    """What a fitted estimator gives for ``X``: crystal vectors, or predictions."""
    return estimator.transform(X) if isinstance(estimator, DeepInfoMaxFeaturizer) else estimator.predict(X)


def fitted(name: str, X: list[Structure], y: np.ndarray) -> BaseEstimator:
    return ESTIMATORS[name]().fit(X, y)


def params_hash(estimator: BaseEstimator) -> dict[str, str]:
    """The estimator's parameters by content, as scikit-learn compares them."""
    return {key: joblib.hash(value) for key, value in estimator.get_params(deep=False).items()}


def snapshot(X: list[Structure]) -> list[dict]:
    return [structure.as_dict() for structure in X]


# ---------------------------------------------------------------- fitting


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fit_returns_self_and_fitting_again_gives_the_same_outputs(name, crystals, y):
    estimator = ESTIMATORS[name]()
    assert estimator.fit(crystals, y) is estimator
    first = outputs(estimator, crystals)
    estimator.fit(crystals, y)
    np.testing.assert_array_equal(outputs(estimator, crystals), first)
    np.testing.assert_array_equal(outputs(fitted(name, crystals, y), crystals), first)  # a new instance too


@pytest.mark.parametrize("name", FEATURIZERS)
def test_the_featurizer_ignores_y_and_fit_transform_is_fit_then_transform(name, crystals, y):
    expected = fitted(name, crystals, y).transform(crystals)
    np.testing.assert_array_equal(ESTIMATORS[name]().fit(crystals).transform(crystals), expected)
    np.testing.assert_array_equal(ESTIMATORS[name]().fit_transform(crystals), expected)
    np.testing.assert_array_equal(ESTIMATORS[name]().fit_transform(crystals, -y), expected)


def test_a_featurizer_given_an_encoder_trains_nothing_and_gives_its_vectors(crystals, no_pretraining):
    shipped = DeepInfoMaxFeaturizer.from_pretrained()
    expected = shipped.transform(crystals)
    for featurizer in (clone(shipped), pickle.loads(pickle.dumps(clone(shipped)))):
        with pytest.raises(NotFittedError):
            featurizer.transform(crystals)
        np.testing.assert_array_equal(featurizer.fit(crystals[:2]).transform(crystals), expected)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fit_changes_neither_the_parameters_nor_the_input(name, crystals, y):
    estimator = ESTIMATORS[name]()
    params = params_hash(estimator)
    X, before, targets = list(crystals), snapshot(crystals), y.copy()
    estimator.fit(X, y)
    outputs(estimator, X)
    assert params_hash(estimator) == params
    assert all(a is b for a, b in zip(X, crystals, strict=True))  # the same list of the same structures
    assert snapshot(X) == before
    np.testing.assert_array_equal(y, targets)


def test_decorating_oxidation_states_leaves_the_input_structures_alone(crystals):
    decorated = [s.copy() for s in crystals]
    for structure in decorated:
        structure.add_oxidation_state_by_guess()
    before = snapshot(decorated)
    featurizer = DeepInfoMaxFeaturizer(**{**TINY, "oxidation": True}).fit(decorated)
    assert featurizer.transform(decorated).shape == (6, 8)
    SiteNetRegressor(oxidation=True, max_epochs=1, batch_sites=8, random_state=0).fit(decorated, np.arange(6.0))
    assert snapshot(decorated) == before


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fit_sets_only_trailing_underscore_attributes_and_outputs_set_none(name, crystals, y):
    estimator = ESTIMATORS[name]()
    public = {key for key in vars(estimator) if not key.startswith("_")}
    estimator.fit(crystals, y)
    added = {key for key in vars(estimator) if not key.startswith("_")} - public
    assert added and all(key.endswith("_") for key in added), added
    state = dict(vars(estimator))
    outputs(estimator, crystals)
    assert vars(estimator) == state


@pytest.mark.parametrize("name", ESTIMATORS)
def test_check_is_fitted_before_and_after_fit(name, crystals, y):
    estimator = ESTIMATORS[name]()
    if name == "shipped featurizer":
        estimator = clone(estimator)  # from_pretrained gives it fitted
    with pytest.raises(NotFittedError):
        check_is_fitted(estimator)
    with pytest.raises((NotFittedError, NotInitializedError)):
        outputs(estimator, crystals)
    check_is_fitted(estimator.fit(crystals, y))


# ---------------------------------------------------------------- outputs


@pytest.mark.parametrize("name", ESTIMATORS)
def test_outputs_do_not_depend_on_the_order_or_company_of_the_structures(name, crystals, y):
    estimator = fitted(name, crystals, y)
    expected = outputs(estimator, crystals)
    order = np.random.default_rng(0).permutation(len(crystals))
    np.testing.assert_allclose(outputs(estimator, [crystals[i] for i in order]), expected[order], atol=BATCHING_ATOL)
    for i, structure in enumerate(crystals):
        np.testing.assert_allclose(outputs(estimator, [structure]), expected[i : i + 1], atol=BATCHING_ATOL)
    np.testing.assert_allclose(outputs(estimator, crystals[::2]), expected[::2], atol=BATCHING_ATOL)
    twice = outputs(estimator, crystals * 2)  # other batches: with 2 threads, other float32 sums
    np.testing.assert_allclose(twice, np.concatenate([expected, expected]), atol=BATCHING_ATOL)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_pickle_and_clone_round_trips(name, crystals, y):
    estimator = fitted(name, crystals, y)
    expected = outputs(estimator, crystals)
    np.testing.assert_array_equal(outputs(pickle.loads(pickle.dumps(estimator)), crystals), expected)
    copy = clone(estimator)
    assert params_hash(copy) == params_hash(estimator)
    np.testing.assert_array_equal(outputs(copy.fit(crystals, y), crystals), expected)
    unfitted = pickle.loads(pickle.dumps(clone(estimator)))
    np.testing.assert_array_equal(outputs(unfitted.fit(crystals, y), crystals), expected)


@pytest.mark.parametrize("name", FEATURIZERS)
def test_a_pipeline_gives_what_its_steps_give_by_hand(name, crystals, y):
    pipe = make_pipeline(ESTIMATORS[name](), Ridge(alpha=0.1)).fit(crystals, y)
    featurizer = fitted(name, crystals, y)
    ridge = Ridge(alpha=0.1).fit(featurizer.transform(crystals), y)
    np.testing.assert_array_equal(pipe.predict(crystals), ridge.predict(featurizer.transform(crystals)))
    np.testing.assert_array_equal(pipe[:-1].transform(crystals), featurizer.transform(crystals))
    assert pipe.score(crystals, y) == ridge.score(featurizer.transform(crystals), y)


@pytest.mark.parametrize("name", REGRESSORS)
def test_a_regressor_in_a_pipeline_predicts_and_scores_as_on_its_own(name, crystals, y):
    regressor = fitted(name, crystals, y)
    pipe = make_pipeline(ESTIMATORS[name]()).fit(crystals, y)
    np.testing.assert_array_equal(pipe.predict(crystals), regressor.predict(crystals))
    score = regressor.score(crystals, y)
    assert isinstance(score, float) and pipe.score(crystals, y) == score


@pytest.mark.parametrize("name", ESTIMATORS)
def test_any_sequence_of_structures_gives_the_same_outputs(name, crystals, y):
    estimator = fitted(name, crystals, y)
    expected = outputs(estimator, crystals)
    array = np.empty(len(crystals), dtype=object)
    array[:] = crystals
    array.flags.writeable = False
    for X in (tuple(crystals), pd.Series(crystals), array, array[:, None], pd.DataFrame({"structure": crystals})):
        np.testing.assert_array_equal(outputs(estimator, X), expected)
        np.testing.assert_array_equal(outputs(ESTIMATORS[name]().fit(X, y), crystals), expected)


def test_output_shapes_and_types(crystals, y):
    featurizer = fitted("pretraining featurizer", crystals, y)
    vectors = featurizer.transform(crystals)
    assert vectors.shape == (6, 8) and vectors.dtype == np.float64 and np.isfinite(vectors).all()
    assert list(featurizer.get_feature_names_out()) == [f"DIM_{k}" for k in range(8)]
    frame = clone(featurizer).set_output(transform="pandas").fit(crystals).transform(crystals)
    assert list(frame.columns) == list(featurizer.get_feature_names_out())
    np.testing.assert_array_equal(frame.to_numpy(), vectors)
    regressor = fitted("regressor", crystals, y)
    prediction = regressor.predict(crystals)
    assert prediction.shape == (6,) and prediction.dtype == np.float32 and np.isfinite(prediction).all()
    for estimator in (featurizer, regressor):  # structures have no numeric input columns to count or name
        assert not hasattr(estimator, "n_features_in_") and not hasattr(estimator, "feature_names_in_")


# ---------------------------------------------------------------- targets


@pytest.mark.parametrize("name", REGRESSORS)
def test_targets_as_a_list_integers_a_column_or_a_series_fit_the_same(name, crystals):
    y = np.array([3, 1, 4, 1, 5, 9])
    expected = fitted(name, crystals, y.astype(float)).predict(crystals)
    for targets in (y, list(y), y[:, None].astype(float), pd.Series(y, name="energy")):
        np.testing.assert_array_equal(fitted(name, crystals, targets).predict(crystals), expected)


def test_unusable_targets_give_clear_errors(crystals, y):
    regressor = ESTIMATORS["regressor"]()
    with pytest.raises(ValueError, match=r"^y is None; SiteNetRegressor.fit needs one target per structure of X$"):
        regressor.fit(crystals)
    with pytest.raises(ValueError, match="X holds 6 structures but y holds 5 targets"):
        regressor.fit(crystals, y[:5])
    with pytest.raises(ValueError, match="complex"):
        regressor.fit(crystals, y + 1j)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="NaN or infinite"):
            regressor.fit(crystals, np.where(np.arange(6) == 2, bad, y))
    with pytest.raises(ValueError, match=r"must have shape \(n,\) or \(n, 1\)"):
        regressor.fit(crystals, np.stack([y, y], axis=1))


def test_partial_fit_continues_from_where_the_last_call_stopped(crystals, y):
    regressor = SiteNetRegressor(max_epochs=1, batch_sites=8, random_state=0, train_split=None, device="cpu")
    regressor.partial_fit(crystals, y)
    check_is_fitted(regressor)
    first = regressor.predict(crystals)
    regressor.partial_fit(crystals, y)
    assert len(regressor.history) == 2  # not started again
    assert not np.array_equal(regressor.predict(crystals), first)


def test_partial_fit_trains_one_epoch_per_call_as_documented(crystals, y):
    regressor = SiteNetRegressor(max_epochs=3, batch_sites=8, random_state=0, train_split=None, device="cpu")
    assert len(regressor.partial_fit(crystals, y).history) == 1
    assert len(regressor.partial_fit(crystals, y, epochs=2).history) == 3
    assert len(regressor.fit(crystals, y).history) == 3  # fit: up to max_epochs, from the start


# ---------------------------------------------------------------- empty, single and invalid inputs


def test_no_structures(crystals, y):
    for empty in ([], (), pd.Series([], dtype=object), np.empty(0, dtype=object)):
        with pytest.raises(ValueError, match=r"^X holds 0 structures; DeepInfoMaxFeaturizer.fit needs at least one"):
            DeepInfoMaxFeaturizer(**TINY).fit(empty)
        with pytest.raises(ValueError, match=r"^X holds 0 structures; SiteNetRegressor.fit needs at least one"):
            ESTIMATORS["regressor"]().fit(empty, [])
    for name, n_features in zip(FEATURIZERS, (8, 64), strict=True):
        vectors = fitted(name, crystals, y).transform([])
        assert vectors.shape == (0, n_features) and vectors.dtype == np.float64
    prediction = fitted("regressor", crystals, y).predict([])
    assert prediction.shape == (0,) and prediction.dtype == np.float32


def test_one_structure(crystals, y):
    with pytest.raises(ValueError, match="needs at least 4 structures, got 1"):
        DeepInfoMaxFeaturizer(**TINY).fit(crystals[:1])
    untrained = DeepInfoMaxFeaturizer(**{**TINY, "max_epochs": 0}).fit(crystals[:1])
    assert np.isfinite(untrained.transform(crystals[:1])).all()
    shipped = DeepInfoMaxFeaturizer.from_pretrained()
    np.testing.assert_array_equal(clone(shipped).fit(crystals[:1]).transform(crystals), shipped.transform(crystals))
    regressor = SiteNetRegressor(max_epochs=2, random_state=0, train_split=None).fit(crystals[:1], y[:1])
    assert regressor.predict(crystals).shape == (6,)
    with pytest.raises(ValueError, match=r"X holds 1 structure: .* needs at least 2; pass train_split=None"):
        ESTIMATORS["regressor"]().fit(crystals[:1], y[:1])


def test_a_structure_not_in_a_sequence_is_refused(crystals, y):
    single = crystals[0]  # a Structure is itself a sequence, of sites: it must not pass as structures
    for estimator in (fitted("pretraining featurizer", crystals, y), fitted("regressor", crystals, y)):
        with pytest.raises(TypeError, match="expected a sequence of pymatgen Structures, got Structure"):
            outputs(estimator, single)
    with pytest.raises(TypeError, match="expected a sequence of pymatgen Structures, got Structure"):
        DeepInfoMaxFeaturizer(**TINY).fit(single)
    with pytest.raises(TypeError, match="expected a sequence of pymatgen Structures, got Structure"):
        ESTIMATORS["regressor"]().fit(single, y[:1])


def test_numbers_and_broken_structures_are_refused_naming_their_position(crystals, y):
    broken = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [np.nan, 0.5, 0.5]])
    X = [*crystals[:2], broken]
    for estimator in (fitted("pretraining featurizer", crystals, y), fitted("regressor", crystals, y)):
        with pytest.raises(StructureError, match=r"^structure 2: "):
            outputs(estimator, X)
        with pytest.raises(StructureError, match=r"^structure 1: expected a pymatgen Structure, got str$"):
            outputs(estimator, [crystals[0], "NaCl"])
        with pytest.raises(StructureError, match=r"^structure 0: expected a pymatgen Structure, got float64$"):
            outputs(estimator, np.zeros(3))
        with pytest.raises(ValueError, match=r"^expected a 1-D array of structures, got shape \(3, 4\)$"):
            outputs(estimator, np.zeros((3, 4)))
        with pytest.raises(TypeError, match=r"^expected a sequence of pymatgen Structures, got csr_matrix$"):
            outputs(estimator, sparse.csr_matrix(np.eye(3)))
    with pytest.raises(StructureError, match=r"^structure 2: "):
        ESTIMATORS["regressor"]().fit(X, y[:3])


def test_the_regressor_offers_no_classifier_methods(crystals, y):
    regressor = fitted("regressor", crystals, y)
    assert not any(hasattr(regressor, m) for m in ("decision_function", "predict_proba", "predict_log_proba"))
