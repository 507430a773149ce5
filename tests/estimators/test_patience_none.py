"""SiteNetRegressor(patience=None): no early stopping, every epoch trained, the final weights kept."""

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from dim_sklearn import SiteNetEnsemble, SiteNetRegressor

QUICK = dict(max_epochs=5, random_state=0, lr=1e-3)


class KeepLastState(Callback):
    """Copies the module's weights at the end of every epoch."""

    def on_epoch_end(self, net, **kwargs):
        self.state = {name: value.clone() for name, value in net.module_.state_dict().items()}


def test_every_epoch_is_trained_and_the_final_weights_are_kept(structures, targets):
    last = KeepLastState()
    net = SiteNetRegressor(**QUICK, patience=None, lr_schedule="cosine", callbacks=[("last", last)])
    net.fit(structures, targets)
    assert len(net.history) == 5
    assert "early_stopping" not in dict(net.callbacks_)
    for name, value in net.module_.state_dict().items():
        assert torch.equal(value, last.state[name]), name


def test_with_patience_the_best_epoch_is_kept(structures, targets):
    last = KeepLastState()
    net = SiteNetRegressor(**{**QUICK, "lr": 0.05}, patience=50, callbacks=[("last", last)]).fit(structures, targets)
    valid = net.history[:, "valid_loss"]
    assert len(net.history) == 5 and int(np.argmin(valid)) < 4  # a large rate: the last epoch is not the best
    assert any(not torch.equal(value, last.state[name]) for name, value in net.module_.state_dict().items())


def test_all_labels_through_the_whole_schedule(structures, targets):
    net = SiteNetRegressor(**QUICK, patience=None, lr_schedule="cosine", train_split=None).fit(structures, targets)
    assert len(net.history) == 5
    assert "valid_loss" not in net.history[-1]
    assert np.isfinite(net.predict(structures)).all()


def test_ensemble_networks_train_every_epoch(structures, targets):
    network = SiteNetRegressor(max_epochs=3, random_state=0, patience=None)
    ensemble = SiteNetEnsemble(network, n_estimators=2, random_state=0).fit(structures, targets)
    assert [len(net.history) for net in ensemble.estimators_] == [3] * ensemble.n_folds
    assert np.isfinite(ensemble.oof_prediction_).all()


@pytest.mark.parametrize("value", [0, -3, 2.5, "30"])
def test_bad_patience_is_refused(structures, targets, value):
    with pytest.raises(ValueError, match="patience"):
        SiteNetRegressor(max_epochs=1, patience=value).fit(structures, targets)
