"""SiteNetRegressor(lr_schedule="cosine"): the learning rate falls to 0 along half a cosine over max_epochs."""

import math

import numpy as np
import pytest
from sklearn.base import clone
from skorch.callbacks import Callback

from dim_sklearn import SiteNetEnsemble, SiteNetRegressor

QUICK = dict(max_epochs=4, patience=10, random_state=0, lr=1e-3)


def _epoch_rates(net: SiteNetRegressor) -> list[float]:
    """The learning rate each epoch trained with (the optimizer's, read by a callback at the epoch's start)."""
    return [float(row["lr"]) for row in net.history]


class RecordRate(Callback):
    """Writes the optimizer's learning rate into each epoch's history row."""

    def on_epoch_begin(self, net, **kwargs):
        net.history.record("lr", net.optimizer_.param_groups[0]["lr"])


def test_cosine_lowers_the_rate_each_epoch_from_lr_towards_zero(structures, targets):
    net = SiteNetRegressor(**QUICK, lr_schedule="cosine", callbacks=[("record_rate", RecordRate())])
    net.fit(structures, targets)
    expected = [1e-3 * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(4)]
    np.testing.assert_allclose(_epoch_rates(net), expected, rtol=1e-9)
    assert dict(net.callbacks_)["lr_scheduler"].lr_scheduler_.T_max == 4


def test_constant_keeps_lr_and_adds_no_scheduler(structures, targets):
    net = SiteNetRegressor(**QUICK, callbacks=[("record_rate", RecordRate())]).fit(structures, targets)
    assert _epoch_rates(net) == [1e-3] * 4
    assert "lr_scheduler" not in dict(net.callbacks_)


def test_the_schedule_changes_the_fit_and_follows_set_params(structures, targets):
    constant = SiteNetRegressor(**QUICK).fit(structures, targets)
    cosine = SiteNetRegressor(**QUICK, lr_schedule="cosine").fit(structures, targets)
    assert not np.allclose(constant.predict(structures), cosine.predict(structures))
    # a clone set to the other schedule is the other fit, seed for seed
    again = clone(cosine).set_params(lr_schedule="constant").fit(structures, targets)
    np.testing.assert_array_equal(again.predict(structures), constant.predict(structures))
    # the budget is max_epochs as set when fitting
    shorter = clone(cosine).set_params(max_epochs=2).fit(structures, targets)
    assert dict(shorter.callbacks_)["lr_scheduler"].lr_scheduler_.T_max == 2


def test_an_ensemble_of_cosine_networks(structures, targets):
    network = SiteNetRegressor(max_epochs=2, random_state=0, lr=1e-3, lr_schedule="cosine")
    ensemble = SiteNetEnsemble(network, n_estimators=2, random_state=0).fit(structures, targets)
    assert all(net.lr_schedule == "cosine" for net in ensemble.estimators_)
    assert np.isfinite(ensemble.predict(structures[:4])).all()


@pytest.mark.parametrize("value", ["Cosine", "linear", None, 1])
def test_an_unknown_schedule_is_refused_by_name(structures, targets, value):
    with pytest.raises(ValueError, match="lr_schedule"):
        SiteNetRegressor(max_epochs=1, lr_schedule=value).fit(structures[:4], targets[:4])
