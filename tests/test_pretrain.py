import numpy as np
import pytest
import torch

import dim_sklearn.pretrain as pretrain_module
from dim_sklearn import DeepInfoMaxFeaturizer, build_point_sets
from dim_sklearn.nn import DeepInfoMax, SiteNetEncoder
from dim_sklearn.pretrain import PretrainSettings, pretrain

FAST = dict(batch_sites=300, patience=50, random_state=0)


@pytest.fixture(scope="module")
def structures(small_structures):
    return small_structures


@pytest.fixture(scope="module")
def point_sets(structures):
    return build_point_sets(structures)


def _weights(featurizer):
    return {k: v.clone() for k, v in featurizer.encoder_.state_dict().items()}


def test_dim_loss_goes_down_on_real_structures(point_sets):
    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder())
    history, best = pretrain(
        model, point_sets, PretrainSettings(max_epochs=6, batch_sites=300, lr=1e-3), random_state=0
    )
    assert len(history) == 6
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert history[-1]["local_dim"] < history[0]["local_dim"]
    assert min(h["valid_loss"] for h in history) < history[0]["valid_loss"]
    assert best == int(np.argmin([h["valid_loss"] for h in history])) + 1
    assert all(np.isfinite(v) for h in history for v in h.values())


def test_early_stopping_keeps_the_best_held_out_weights(structures):
    settings = dict(FAST, patience=2, lr=0.05)
    stopped = DeepInfoMaxFeaturizer(max_epochs=30, **settings).fit(structures)
    losses = [h["valid_loss"] for h in stopped.history_]
    assert stopped.best_epoch_ == int(np.argmin(losses)) + 1
    assert len(stopped.history_) == stopped.best_epoch_ + 2 < 30  # stopped by patience
    # the same run cut at the best epoch ends with the same weights
    cut = DeepInfoMaxFeaturizer(max_epochs=stopped.best_epoch_, **settings).fit(structures)
    for name, tensor in _weights(stopped).items():
        assert torch.equal(tensor, _weights(cut)[name]), name


def test_same_random_state_gives_bit_identical_weights_and_features(structures):
    a = DeepInfoMaxFeaturizer(max_epochs=2, **FAST).fit(structures)
    b = DeepInfoMaxFeaturizer(max_epochs=2, **FAST).fit(structures)
    for name, tensor in _weights(a).items():
        assert torch.equal(tensor, _weights(b)[name]), name
    assert np.array_equal(a.transform(structures[:20]), b.transform(structures[:20]))
    c = DeepInfoMaxFeaturizer(max_epochs=2, **{**FAST, "random_state": 1}).fit(structures)
    assert not np.array_equal(a.transform(structures[:20]), c.transform(structures[:20]))


def test_interrupted_fit_resumes_from_its_checkpoint(structures, tmp_path, monkeypatch):
    uninterrupted = DeepInfoMaxFeaturizer(max_epochs=4, **FAST).fit(structures)

    real_save = pretrain_module.save_checkpoint

    def save_then_die(state, path):
        real_save(state, path)
        if len(state["history"]) == 2:
            raise KeyboardInterrupt("killed after epoch 2")

    monkeypatch.setattr(pretrain_module, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        DeepInfoMaxFeaturizer(max_epochs=4, checkpoint_dir=str(tmp_path), **FAST).fit(structures)
    monkeypatch.setattr(pretrain_module, "save_checkpoint", real_save)

    resumed = DeepInfoMaxFeaturizer(max_epochs=4, checkpoint_dir=str(tmp_path), **FAST).fit(structures)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in uninterrupted.history_]
    for name, tensor in _weights(uninterrupted).items():
        assert torch.equal(tensor, _weights(resumed)[name]), name


def test_checkpoint_of_another_run_is_refused(structures, tmp_path):
    DeepInfoMaxFeaturizer(max_epochs=1, checkpoint_dir=str(tmp_path), **FAST).fit(structures)
    with pytest.raises(ValueError, match="other data or settings"):
        DeepInfoMaxFeaturizer(max_epochs=1, checkpoint_dir=str(tmp_path), **FAST).fit(structures[:40])


def test_too_few_structures(point_sets):
    with pytest.raises(ValueError, match="at least 4 structures"):
        pretrain(DeepInfoMax(SiteNetEncoder()), point_sets[:3])


def test_divergence_in_a_later_epoch_keeps_the_best_earlier_weights(structures, monkeypatch):
    one_epoch = DeepInfoMaxFeaturizer(max_epochs=1, **FAST).fit(structures)
    run_epoch, training_epochs = pretrain_module._run_epoch, []

    def diverge_in_epoch_2(model, batches, optimisers, *args):
        losses = run_epoch(model, batches, optimisers, *args)
        if optimisers is not None:
            training_epochs.append(1)
            if len(training_epochs) == 2:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("nan"))
        return losses

    monkeypatch.setattr(pretrain_module, "_run_epoch", diverge_in_epoch_2)
    with pytest.warns(RuntimeWarning, match="diverged in epoch 2 .*keeping the weights of epoch 1: lower lr"):
        diverged = DeepInfoMaxFeaturizer(max_epochs=4, **FAST).fit(structures)
    assert [h["epoch"] for h in diverged.history_] == [1] and diverged.best_epoch_ == 1
    for name, tensor in _weights(one_epoch).items():
        assert torch.equal(tensor, _weights(diverged)[name]), name


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"max_epochs must be an integer >= 0, got -1; lr must be a finite number > 0"):
        PretrainSettings(max_epochs=-1, lr=float("inf"))
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\), got 1.5"):
        PretrainSettings(validation_fraction=1.5)
