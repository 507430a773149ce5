import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from skorch.callbacks import Callback, Checkpoint, EpochScoring, LRScheduler, ProgressBar
from skorch.exceptions import NotInitializedError

from dim_sklearn import DeepInfoMaxFeaturizer, SiteNetRegressor, StructureError
from dim_sklearn.nn import SiteNetModel

QUICK = dict(max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def featurizer(structures):
    return DeepInfoMaxFeaturizer(max_epochs=1, batch_sites=300, random_state=0).fit(structures)


def _encoder_state(module):
    return {k: v.clone() for k, v in module.encoder.state_dict().items()}


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_fit_predict_on_real_structures_with_1d_targets(structures, targets):
    reg = SiteNetRegressor(**QUICK).fit(structures, targets)
    prediction = reg.predict(structures[:7])
    assert prediction.shape == (7,) and prediction.dtype == np.float32 and np.isfinite(prediction).all()
    assert len(reg.history) == 2 and "valid_loss" in reg.history[-1]
    # 2-D targets, a pandas Series of structures: the same fitted model
    again = SiteNetRegressor(**QUICK).fit(pd.Series(structures), targets.reshape(-1, 1))
    np.testing.assert_array_equal(again.predict(structures[:7]), prediction)


def test_same_random_state_same_predictions_and_standardised_targets(structures, targets):
    a = SiteNetRegressor(**QUICK).fit(structures, targets)
    b = SiteNetRegressor(**QUICK).fit(structures, targets)
    np.testing.assert_array_equal(a.predict(structures), b.predict(structures))
    assert a.target_mean_ == pytest.approx(targets.mean()) and a.target_scale_ == pytest.approx(targets.std())
    # a target on a very different scale is learnt on the standardised scale
    big = SiteNetRegressor(**QUICK).fit(structures, 1000 * targets + 500)
    assert abs(big.predict(structures).mean() - (1000 * targets + 500).mean()) < 300


def test_pretrained_weights_are_the_starting_point_after_clone_and_set_params(featurizer, tmp_path):
    pretrained = {k: v.clone() for k, v in featurizer.encoder_.state_dict().items()}
    reg = SiteNetRegressor(encoder=featurizer, random_state=0)
    for candidate in (reg, clone(reg), clone(reg).set_params(lr=3e-4, max_epochs=1)):
        _assert_same_weights(_encoder_state(candidate.initialize().module_), pretrained)
    featurizer.save(tmp_path / "encoder")
    from_path = SiteNetRegressor(encoder=str(tmp_path / "encoder")).initialize()
    _assert_same_weights(_encoder_state(from_path.module_), pretrained)
    # a fresh model does not start from them
    fresh = _encoder_state(SiteNetRegressor(random_state=0).initialize().module_)
    assert not torch.equal(fresh["global_.mu.weight"], pretrained["global_.mu.weight"])


def test_every_fit_restarts_from_the_pretrained_weights(featurizer, structures, targets):
    seen = []

    class Record(LRScheduler):
        def on_train_begin(self, net, **kwargs):
            seen.append(_encoder_state(net.module_))
            super().on_train_begin(net, **kwargs)

    reg = SiteNetRegressor(encoder=featurizer, callbacks=[("record", Record())], **QUICK)
    reg.fit(structures, targets)
    reg.fit(structures, targets)  # refit: re-initialised from the featurizer, not continued
    search = GridSearchCV(clone(reg), {"lr": [1e-4, 1e-3]}, cv=2, scoring="neg_mean_absolute_error")
    search.fit(structures, targets)
    pretrained = {k: v for k, v in featurizer.encoder_.state_dict().items()}
    assert len(seen) == 2 + 2 * 2 + 1
    for state in seen:
        _assert_same_weights(state, pretrained)
    assert search.best_estimator_.predict(structures[:3]).shape == (3,)


def test_standard_skorch_callbacks_work(structures, targets, tmp_path):
    reg = SiteNetRegressor(
        callbacks=[
            ProgressBar(),
            Checkpoint(dirname=str(tmp_path / "ckpt")),
            ("lr", LRScheduler("StepLR", step_size=1)),
            EpochScoring("neg_mean_absolute_error", name="train_mae", on_train=True),  # on cached predictions
        ],
        callbacks__early_stopping__patience=5,
        **QUICK,
    ).fit(structures, targets)
    assert (tmp_path / "ckpt" / "params.pt").is_file()
    assert reg.history[-1, "train_mae"] < 0
    assert reg.optimizer_.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.1**2)
    assert dict(reg.callbacks_)["early_stopping"].patience == 5
    no_stopping = SiteNetRegressor(callbacks__early_stopping=None, **QUICK).fit(structures, targets)
    assert (
        "early_stopping" not in dict(no_stopping.callbacks_) or dict(no_stopping.callbacks_)["early_stopping"] is None
    )


def test_cross_val_predict(structures, targets):
    prediction = cross_val_predict(SiteNetRegressor(**QUICK), structures, targets, cv=KFold(2))
    assert prediction.shape == (len(structures),) and np.isfinite(prediction).all()


def test_freezer_keeps_the_encoder_and_trains_the_head(featurizer, structures, targets):
    reg = SiteNetRegressor(encoder=featurizer, freeze_encoder=True, **QUICK).fit(structures, targets)
    _assert_same_weights(_encoder_state(reg.module_), dict(featurizer.encoder_.state_dict()))
    initial = SiteNetRegressor(encoder=featurizer, **QUICK).initialize().module_.head.state_dict()
    assert not torch.equal(reg.module_.head.state_dict()["0.weight"], initial["0.weight"])
    unfrozen = SiteNetRegressor(encoder=featurizer, **QUICK).fit(structures, targets)
    assert not torch.equal(unfrozen.module_.encoder.global_.mu.weight, featurizer.encoder_.module.global_.mu.weight)


def test_pickle_and_save_load_params_round_trips(featurizer, structures, targets, tmp_path):
    reg = SiteNetRegressor(encoder=featurizer, **QUICK).fit(structures, targets)
    expected = reg.predict(structures)
    restored = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(restored.predict(structures), expected)
    assert restored.get_params()["device"] == "auto" and restored.device_ == reg.device_

    reg.save_params(f_params=tmp_path / "params.pt", f_history=tmp_path / "history.json")
    other = SiteNetRegressor(encoder=featurizer).initialize()
    other.load_params(f_params=tmp_path / "params.pt", f_history=tmp_path / "history.json")
    np.testing.assert_array_equal(other.predict(structures), expected)  # target scaling travels as buffers
    assert len(other.history) == len(reg.history)


def test_device_stays_as_given_and_device_is_where_the_model_runs(structures, targets):
    reg = SiteNetRegressor(**QUICK)
    assert reg.get_params()["device"] == "auto" and reg.device == "auto"
    reg.fit(structures, targets)
    where = "cuda" if torch.cuda.is_available() else "cpu"
    assert reg.get_params()["device"] == "auto" and reg.device_ == where
    assert next(reg.module_.parameters()).device.type == where
    assert clone(reg).get_params()["device"] == "auto"
    reg.set_params(criterion__reduction="mean")  # skorch rebuilds the criterion of a fitted net on the device
    assert reg.get_params()["device"] == "auto" and reg.criterion_.reduction == "mean"
    on_cpu = SiteNetRegressor(device="cpu", **QUICK).fit(structures, targets)
    assert on_cpu.get_params()["device"] == "cpu" and on_cpu.device_ == "cpu"
    assert clone(on_cpu.set_params(device="auto")).get_params()["device"] == "auto"


def test_bad_structures_and_targets_give_clear_errors(structures, targets, featurizer):
    disordered = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    bad = [*structures[:5], disordered, *structures[5:10]]
    with pytest.raises(StructureError, match=r"structure 5.*disordered"):
        SiteNetRegressor(**QUICK).fit(bad, np.zeros(len(bad)))
    reg = SiteNetRegressor(**QUICK).fit(structures, targets)
    with pytest.raises(StructureError, match="structure 1: expected a pymatgen Structure"):
        reg.predict([structures[0], "Fe2O3"])
    with pytest.raises(ValueError, match="NaN"):
        SiteNetRegressor(**QUICK).fit(structures, np.where(np.arange(40) == 3, np.nan, targets))
    with pytest.raises(ValueError, match="one target"):
        SiteNetRegressor(**QUICK).fit(structures, np.zeros((40, 2)))
    with pytest.raises(NotInitializedError):
        SiteNetRegressor().predict(structures[:2])
    with pytest.raises(ValueError, match="not fitted"):
        SiteNetRegressor(encoder=DeepInfoMaxFeaturizer()).initialize()
    with pytest.raises(ValueError, match="oxidation"):
        SiteNetRegressor(encoder=featurizer, oxidation=True).initialize()
    with pytest.raises(ValueError, match="from scratch"):
        SiteNetRegressor(encoder=featurizer, preset="sitenet").initialize()
    with pytest.raises(ValueError, match=r"SiteNetRegressor: encoder must be None or .*PretrainedEncoder.*, got 42"):
        SiteNetRegressor(encoder=42).initialize()


def test_nonnegative_output_clamps_with_identity_gradient():
    model = SiteNetModel(torch.nn.Identity(), torch.nn.Identity(), nonnegative=True)
    x = torch.tensor([[-2.0], [3.0]], requires_grad=True)
    out = model(x)
    assert out.tolist() == [[0.0], [3.0]]
    out.sum().backward()
    assert x.grad.tolist() == [[1.0], [1.0]]


def test_nonnegative_regressor_predicts_no_negative_values(structures, targets):
    reg = SiteNetRegressor(nonnegative=True, **QUICK).fit(structures, targets)  # formation energies < 0
    assert (reg.predict(structures) >= 0).all()


def test_original_sitenet_preset(structures, targets):
    reg = SiteNetRegressor(preset="sitenet", criterion=torch.nn.L1Loss, lr=8.1e-4, **QUICK).fit(structures, targets)
    n_parameters = sum(p.numel() for p in reg.module_.parameters())
    assert 250_000 < n_parameters < 350_000  # the paper: about 304k
    assert reg.predict(structures).shape == (40,)
    with pytest.raises(ValueError, match="preset"):
        SiteNetRegressor(preset="huge").initialize()


def test_fine_tuned_from_dim_with_100_labels_beats_the_mean_by_a_wide_margin(mp_cs419, tmp_path):
    """Real data: mp_cs419 formation energy, the study's split; DIM pretraining on training structures only."""
    from sklearn.model_selection import train_test_split

    structures, frame = mp_cs419
    y = frame["formation_energy_per_atom"].to_numpy()
    train, test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0)
    featurizer = DeepInfoMaxFeaturizer(max_epochs=3, random_state=0, cache_dir=str(tmp_path)).fit(
        [structures[i] for i in train[:1000]]
    )
    labelled = np.random.default_rng(0).choice(train, size=100, replace=False)
    reg = SiteNetRegressor(encoder=featurizer, random_state=0, cache_dir=str(tmp_path))
    reg.fit([structures[i] for i in labelled], y[labelled])
    mae = np.abs(reg.predict([structures[i] for i in test]) - y[test]).mean()
    mean_mae = np.abs(y[labelled].mean() - y[test]).mean()
    assert mae < 0.6 * mean_mae, (mae, mean_mae)


def test_init_auto_keeps_the_start_with_the_lower_validation_loss(featurizer, structures, targets):
    auto = SiteNetRegressor(encoder=featurizer, init="auto", max_epochs=3, random_state=0).fit(structures, targets)
    assert auto.get_params()["init"] == "auto"
    assert set(auto.init_valid_losses_) == {"encoder", "scratch"}
    assert all(type(loss) is float for loss in auto.init_valid_losses_.values())  # plain numbers, as in JSON
    assert auto.init_ == min(auto.init_valid_losses_, key=auto.init_valid_losses_.get)
    # the kept model is the plain fit from that start, bit for bit (same seeds, same validation split)
    plain = {
        start: SiteNetRegressor(encoder=featurizer, init=start, max_epochs=3, random_state=0).fit(structures, targets)
        for start in ("encoder", "scratch")
    }
    for start, reg in plain.items():
        assert min(reg.history[:, "valid_loss"]) == auto.init_valid_losses_[start]
    kept = plain[auto.init_]
    columns = ("epoch", "train_loss", "valid_loss")
    assert auto.history[:, columns] == kept.history[:, columns]  # its own history, not a copy of another run
    np.testing.assert_array_equal(auto.predict(structures), kept.predict(structures))
    with pytest.raises(ValueError, match="needs an encoder"):
        SiteNetRegressor(init="auto", max_epochs=1).fit(structures, targets)
    with pytest.raises(ValueError, match="init must be one of 'encoder', 'scratch', 'auto', got 'best'"):
        SiteNetRegressor(init="best", max_epochs=1).fit(structures, targets)


def test_init_scratch_is_the_encoders_architecture_at_random_weights(featurizer):
    scratch = SiteNetRegressor(encoder=featurizer, init="scratch", random_state=0).initialize()
    assert scratch.point_set_config_ == featurizer.encoder_.point_set_config
    # the featurizer's architecture is the default one: the same weights as a model without an encoder
    no_encoder = SiteNetRegressor(random_state=0).initialize()
    _assert_same_weights(scratch.module_.state_dict(), no_encoder.module_.state_dict())
    encoder_start = _encoder_state(SiteNetRegressor(encoder=featurizer, random_state=0).initialize().module_)
    assert not torch.equal(_encoder_state(scratch.module_)["global_.mu.weight"], encoder_start["global_.mu.weight"])


def test_targets_far_from_unit_scale_lengths_and_parameters(structures, targets):
    huge = SiteNetRegressor(**QUICK).fit(structures, targets * 1e20)
    prediction = huge.predict(structures[:5])
    assert np.isfinite(prediction).all() and 1e19 < np.abs(prediction).mean() < 1e21
    assert huge.target_scale_ == pytest.approx(targets.std() * 1e20)
    with pytest.raises(ValueError, match="X holds 40 structures but y holds 39 targets"):
        SiteNetRegressor(**QUICK).fit(structures, targets[:39])
    with pytest.raises(ValueError, match="beyond float32"):
        SiteNetRegressor(**QUICK).fit(structures, targets * 1e300)
    with pytest.raises(ValueError, match="complex values"):
        SiteNetRegressor(**QUICK).fit(structures, targets + 1j)
    for params, message in [
        ({"max_epochs": 0}, "SiteNetRegressor: max_epochs must be an integer >= 1 or 'auto', got 0"),
        ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
        ({"batch_sites": 0}, "batch_sites must be an integer >= 1, got 0"),
        ({"max_atoms": 5000}, "max_atoms must be None or an integer from 1 to 1000, got 5000"),
        ({"gradient_clip": -1.0}, "gradient_clip must be None or a finite number > 0, got -1.0"),
    ]:
        with pytest.raises(ValueError, match=message):
            SiteNetRegressor(**params).fit(structures, targets)


def test_diverging_fine_tuning_warns_and_keeps_the_last_finite_weights(structures, targets):
    with pytest.warns(RuntimeWarning, match="fine-tuning diverged in epoch 1 .*keeping the initial weights"):
        first = SiteNetRegressor(lr=1e8, gradient_clip=None, max_epochs=3, random_state=0).fit(structures, targets)
    start = SiteNetRegressor(random_state=0).initialize().module_.state_dict()
    weights = {k: v for k, v in first.module_.state_dict().items() if not k.startswith("target_")}
    _assert_same_weights(weights, {k: v for k, v in start.items() if not k.startswith("target_")})
    assert np.isfinite(first.predict(structures)).all()

    class PoisonEpoch2(Callback):
        def on_batch_end(self, net, training=False, **kwargs):
            if training and len(net.history) == 2:
                with torch.no_grad():
                    net.module_.head[0].weight.fill_(float("nan"))

    with pytest.warns(RuntimeWarning, match="diverged in epoch 2 .*keeping the weights of epoch 1"):
        later = SiteNetRegressor(callbacks=[("poison", PoisonEpoch2())], max_epochs=3, random_state=0)
        later.fit(structures, targets)
    one_epoch = SiteNetRegressor(max_epochs=1, random_state=0).fit(structures, targets)
    np.testing.assert_array_equal(later.predict(structures), one_epoch.predict(structures))


def test_compile_means_the_pair_blocks_not_skorchs_whole_module_compile():
    """skorch's compile=True would return a torch.compile wrapper whose weights save under other names."""
    module = torch.nn.Linear(2, 1)
    assert SiteNetRegressor(compile=True).torch_compile(module, "module") is module
    assert SiteNetRegressor(compile="auto").torch_compile(module, "module") is module
