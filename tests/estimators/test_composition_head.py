"""SiteNetRegressor(composition="magpie"): a head that also sees the Magpie descriptors of the composition."""

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from dim_sklearn import SiteNetEnsemble, SiteNetRegressor
from dim_sklearn.composition import magpie_features
from dim_sklearn.nn import SiteNetEncoder, SiteNetModel
from dim_sklearn.pointsets import build_point_sets, collate_point_sets

QUICK = dict(max_epochs=2, random_state=0, composition="magpie")


@pytest.fixture(scope="module")
def fitted(structures, targets):
    return SiteNetRegressor(**QUICK).fit(structures, targets)


def test_head_takes_the_standardised_descriptors_of_the_training_structures(fitted, structures):
    head = fitted.module_.head[0]
    assert head.in_features == fitted.module_.encoder.config.global_dim + 132
    table = magpie_features(structures)
    mean, scale, low, high = fitted.descriptor_stats_
    np.testing.assert_allclose(mean, np.nanmean(table, axis=0), rtol=1e-6)
    np.testing.assert_allclose(low, np.nanmin(table, axis=0))
    np.testing.assert_allclose(high, np.nanmax(table, axis=0))
    assert (scale > 0).all()
    # the statistics travel in the model's state, as the target scaling does
    np.testing.assert_allclose(fitted.module_.state_dict()["descriptor_stats"].numpy(), fitted.descriptor_stats_)
    prediction = fitted.predict(structures[:5])
    assert prediction.shape == (5,) and np.isfinite(prediction).all()


def test_same_seed_same_predictions_and_the_descriptors_change_them(fitted, structures, targets):
    again = SiteNetRegressor(**QUICK).fit(structures, targets)
    np.testing.assert_array_equal(again.predict(structures), fitted.predict(structures))
    plain = SiteNetRegressor(**{**QUICK, "composition": None}).fit(structures, targets)
    assert plain.descriptor_stats_ is None and plain.module_.head[0].in_features == 64
    assert not np.allclose(plain.predict(structures), fitted.predict(structures))


def test_descriptors_beyond_the_training_range_are_clipped_and_missing_ones_take_the_mean(structures):
    torch.manual_seed(0)
    stats = np.array([[1.0, 2.0], [0.5, 4.0], [0.0, -1.0], [2.0, 5.0]])
    head = torch.nn.Linear(64 + 2, 1)
    model = SiteNetModel(SiteNetEncoder(), head, descriptor_stats=stats).eval()
    batch = collate_point_sets(build_point_sets(structures[:3]))

    def predict(a: float, b: float) -> torch.Tensor:
        with torch.no_grad():
            return model(batch, torch.tensor([[a, b]] * 3))

    torch.testing.assert_close(predict(2.0, 5.0), predict(1e9, 1e9))  # clipped at the highest training value
    torch.testing.assert_close(predict(0.0, -1.0), predict(-1e9, -50.0))  # and at the lowest
    torch.testing.assert_close(predict(float("nan"), float("nan")), predict(1.0, 2.0))  # missing: the mean
    assert not torch.allclose(predict(0.5, 2.0), predict(1.5, 2.0))
    with pytest.raises(ValueError, match="takes 2 descriptors per crystal, got none"):
        model(batch)
    with pytest.raises(ValueError, match="got 3 columns"):
        model(batch, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="takes 0 descriptors"):
        SiteNetModel(SiteNetEncoder(), torch.nn.Linear(64, 1))(batch, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"shape \(4, n_descriptors\)"):
        SiteNetModel(SiteNetEncoder(), head, descriptor_stats=stats[:2])


def test_round_trips_through_pickle_and_save_load_params(fitted, structures, tmp_path):
    expected = fitted.predict(structures)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict(structures), expected)
    fitted.save_params(f_params=tmp_path / "params.pt")
    other = SiteNetRegressor(composition="magpie").initialize()
    other.load_params(f_params=tmp_path / "params.pt")
    np.testing.assert_array_equal(other.predict(structures), expected)


def test_fits_on_a_dataset_it_made_and_refuses_one_without_descriptors(fitted, structures, targets):
    dataset = fitted.get_dataset(structures, targets)
    assert dataset.descriptors.shape == (len(structures), 132)
    subset = Subset(dataset, list(range(30)))
    on_subset = SiteNetRegressor(**QUICK).fit(subset, targets[:30])
    on_structures = SiteNetRegressor(**QUICK).fit(structures[:30], targets[:30])
    np.testing.assert_allclose(on_subset.descriptor_stats_, on_structures.descriptor_stats_)
    np.testing.assert_array_equal(on_subset.predict(structures[30:]), on_structures.predict(structures[30:]))
    plain_dataset = SiteNetRegressor(max_epochs=1).initialize().get_dataset(structures, targets)
    with pytest.raises(ValueError, match="composition='magpie' needs the descriptors of X"):
        SiteNetRegressor(**QUICK).fit(plain_dataset, None)


def test_ensemble_of_networks_with_the_composition_head(structures, targets):
    network = SiteNetRegressor(max_epochs=2, composition="magpie")
    ensemble = SiteNetEnsemble(network, n_folds=2, n_estimators=10, random_state=0).fit(structures, targets)
    assert all(net.module_.head[0].in_features == 64 + 132 for net in ensemble.estimators_)
    assert np.isfinite(ensemble.predict(structures[:4])).all()
