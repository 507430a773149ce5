import itertools

import numpy as np
import pytest
import torch
from crystals import six_crystals

import dim_sklearn.pretrain as pretrain_module
from dim_sklearn import DeepInfoMaxFeaturizer, build_point_sets
from dim_sklearn.nn import DeepInfoMax, EncoderConfig, SiteNetEncoder
from dim_sklearn.pointsets import DistributedSiteBudgetBatchSampler
from dim_sklearn.pretrain import PretrainCallback, PretrainSettings, pretrain

FAST = dict(batch_sites=300, patience=50, random_state=0)
# six hand-built crystals, two held out, batches of about two crystals: a run of a few epochs in a second
TINY = EncoderConfig(width=4, local_dim=2, global_width=4, global_dim=3, n_rbf=2)
TINY_SETTINGS = dict(batch_sites=5, patience=50, validation_fraction=0.34)


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


def _tiny_run(max_epochs, crystals=None, **kwargs):
    """Pretrain a tiny encoder on hand-built crystals (the six by default); (model, history, best epoch)."""
    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder(TINY))
    settings = PretrainSettings(max_epochs=max_epochs, **TINY_SETTINGS)
    point_sets = build_point_sets(crystals or six_crystals())
    history, best = pretrain(model, point_sets, settings, random_state=0, **kwargs)
    return model, history, best


def _assert_same_weights(a, b):
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name


class Recorder(PretrainCallback):
    """Every hook call: (hook, epochs in the history or whether the batch trained, crystals of the batch)."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, model, history):
        self.calls.append(("begin", len(history)))

    def on_batch_end(self, model, batch, losses, training):
        assert torch.isfinite(losses["loss"]) and model.training == training
        self.calls.append(("batch", training, batch.n_crystals))

    def on_epoch_end(self, model, history):
        self.calls.append(("epoch", len(history)))

    def on_train_end(self, model, history):
        assert not model.training
        self.calls.append(("end", len(history)))


def test_callbacks_see_every_batch_and_epoch_and_change_nothing():
    recorder = Recorder()
    model, history, best = _tiny_run(3, callbacks=[recorder])
    plain, plain_history, plain_best = _tiny_run(3)
    _assert_same_weights(model, plain)
    assert [row["loss"] for row in history] == [row["loss"] for row in plain_history] and best == plain_best

    assert recorder.calls[0] == ("begin", 0) and recorder.calls[-1] == ("end", 3)
    epochs = [list(calls) for end, calls in itertools.groupby(recorder.calls[1:-1], lambda c: c[0] == "epoch")]
    assert epochs[1::2] == [[("epoch", 1)], [("epoch", 2)], [("epoch", 3)]]
    for batches in epochs[::2]:  # each epoch: the 4 training crystals, then the 2 held-out ones
        assert sum(n for _, training, n in batches if training) == 4
        assert [(training, n) for _, training, n in batches if not training] == [(False, 2)]
        assert [training for _, training, _ in batches] == sorted((t for _, t, _ in batches), reverse=True)


def test_a_checkpoint_resumed_tells_the_callbacks_its_epochs(tmp_path):
    _tiny_run(2, checkpoint_dir=tmp_path)
    recorder = Recorder()
    _tiny_run(3, checkpoint_dir=tmp_path, callbacks=[recorder])
    assert recorder.calls[0] == ("begin", 2) and [c for c in recorder.calls if c[0] == "epoch"] == [("epoch", 3)]


class FirstBatch(DistributedSiteBudgetBatchSampler):
    def __iter__(self):
        return itertools.islice(super().__iter__(), 1)


def test_batch_sampler_makes_the_training_batches():
    twelve = six_crystals() * 2  # 8 training crystals: several batches of 5 sites
    runs = {}
    for sampler in (DistributedSiteBudgetBatchSampler, FirstBatch):
        recorder = Recorder()
        _, history, _ = _tiny_run(2, twelve, callbacks=[recorder], batch_sampler=sampler)
        runs[sampler] = history, [c[1] for c in recorder.calls if c[0] == "batch" and c[1]]
    assert len(runs[DistributedSiteBudgetBatchSampler][1]) > 2 and len(runs[FirstBatch][1]) == 2
    assert runs[FirstBatch][0][-1]["loss"] != runs[DistributedSiteBudgetBatchSampler][0][-1]["loss"]


def test_divergence_in_a_later_epoch_keeps_the_best_earlier_weights():
    one_epoch, _, _ = _tiny_run(1)

    class PoisonEpoch2(PretrainCallback):
        def __init__(self):
            self.epochs = 0

        def on_epoch_end(self, model, history):
            self.epochs = len(history)

        def on_batch_end(self, model, batch, losses, training):
            if training and self.epochs == 1:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("nan"))

    with pytest.warns(RuntimeWarning, match="diverged in epoch 2 .*keeping the weights of epoch 1: lower lr"):
        diverged, history, best = _tiny_run(4, callbacks=[PoisonEpoch2()])
    assert [h["epoch"] for h in history] == [1] and best == 1
    _assert_same_weights(one_epoch, diverged)


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"max_epochs must be an integer >= 0, got -1; lr must be a finite number > 0"):
        PretrainSettings(max_epochs=-1, lr=float("inf"))
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\), got 1.5"):
        PretrainSettings(validation_fraction=1.5)
