"""SiteNetRegressor(max_epochs="auto"): a budget of structures seen, resolved from the labels of each fit."""

import pytest
from sklearn.base import clone

from dim_sklearn import SiteNetRegressor, regressor


@pytest.mark.parametrize(("n_labels", "epochs"), [(50, 300), (100, 300), (250, 120), (1000, 30), (10_000, 3)])
def test_auto_gives_thirty_thousand_structures_seen_at_most_three_hundred_epochs(n_labels, epochs):
    assert SiteNetRegressor(max_epochs="auto")._epoch_budget(n_labels) == epochs
    assert SiteNetRegressor(max_epochs=7)._epoch_budget(n_labels) == 7


def test_auto_trains_the_whole_schedule_over_the_epochs_it_chose(structures, targets, monkeypatch):
    monkeypatch.setattr(regressor, "AUTO_EPOCH_SAMPLES", 3 * len(structures))  # 3 epochs for these labels
    net = SiteNetRegressor(
        max_epochs="auto", lr=1e-3, lr_schedule="cosine", patience=None, train_split=None, random_state=0
    )
    net.fit(structures, targets)
    assert net.epochs_ == 3 and len(net.history) == 3
    assert dict(net.callbacks_)["lr_scheduler"].lr_scheduler_.T_max == 3  # the cosine ends with the fit
    assert net.max_epochs == "auto" and clone(net).max_epochs == "auto"  # the parameter stays as given
    half = net.fit(structures[: len(structures) // 2], targets[: len(targets) // 2])
    assert half.epochs_ == 6 and len(half.history) == 6  # a refit resolves again, for its own labels


def test_a_bad_max_epochs_is_named(structures, targets):
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1 or 'auto'"):
        SiteNetRegressor(max_epochs="long").fit(structures, targets)
