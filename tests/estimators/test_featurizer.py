import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure
from sklearn.base import clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from dim_sklearn import DeepInfoMaxFeaturizer, IncompatibleModelError, PointSetConfig, StructureError
from dim_sklearn.pretrain import PretrainCallback

QUICK = dict(max_epochs=1, batch_sites=300, random_state=0)


@pytest.fixture(scope="module")
def fitted(structures):
    return DeepInfoMaxFeaturizer(**QUICK).fit(structures)


@pytest.fixture
def disordered():
    return Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])


def test_transform_gives_a_float_array_for_any_sequence_type(fitted, structures):
    X = fitted.transform(structures)
    assert X.shape == (40, 64) and X.dtype == np.float64 and np.isfinite(X).all()
    assert np.array_equal(fitted.transform(pd.Series(structures)), X)
    assert np.array_equal(fitted.transform(np.array([*structures, None], dtype=object)[:40]), X)
    np.testing.assert_allclose(
        fitted.transform(structures[:7]), X[:7], rtol=1e-5, atol=1e-6
    )  # other rows do not matter


def test_fit_ignores_y_and_returns_self(structures, targets):
    featurizer = DeepInfoMaxFeaturizer(**QUICK)
    assert featurizer.fit(structures, targets) is featurizer
    assert np.array_equal(
        featurizer.transform(structures), DeepInfoMaxFeaturizer(**QUICK).fit(structures).transform(structures)
    )
    assert featurizer.encoder_.module.training is False
    assert all(p.device.type == "cpu" for p in featurizer.encoder_.module.parameters())


def test_not_fitted_error(structures):
    with pytest.raises(NotFittedError):
        DeepInfoMaxFeaturizer().transform(structures[:2])


def test_init_only_stores_parameters_and_clone_round_trips(fitted):
    params = fitted.get_params()
    assert params["max_atoms"] == 50 and params["lr"] == 1e-3 and params["random_state"] == 0
    copy = clone(fitted)
    assert copy.get_params() == params
    assert not hasattr(copy, "encoder_")
    copy.set_params(kl_weight=0.2, max_epochs=3)
    assert copy.kl_weight == 0.2 and fitted.kl_weight == 0.1


def test_untrained_encoder_is_max_epochs_zero(structures):
    untrained = DeepInfoMaxFeaturizer(max_epochs=0, random_state=0).fit(structures)
    assert untrained.history_ == [] and untrained.best_epoch_ == 0
    assert untrained.transform(structures[:3]).shape == (3, 64)


def test_pipeline_in_grid_search_on_a_plain_list(structures, targets):
    pipe = Pipeline(
        [("dim", DeepInfoMaxFeaturizer(**QUICK)), ("rf", RandomForestRegressor(n_estimators=10, random_state=0))]
    )
    search = GridSearchCV(pipe, {"dim__kl_weight": [0.1, 0.5]}, cv=2, scoring="neg_mean_absolute_error")
    search.fit(list(structures), targets)
    assert search.best_params_["dim__kl_weight"] in (0.1, 0.5)
    assert search.predict(structures[:5]).shape == (5,)


def test_set_output_pandas(fitted, structures):
    series = pd.Series(structures[:6], index=[f"s{i}" for i in range(6)])
    featurizer = clone(fitted).set_output(transform="pandas")
    featurizer.encoder_ = fitted.encoder_
    frame = featurizer.transform(series)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [f"DIM_{k}" for k in range(64)]
    assert list(frame.index) == list(series.index)
    assert list(fitted.get_feature_names_out()) == fitted.feature_labels()


def test_featurize_dataframe_with_a_bad_row(fitted, structures, disordered):
    df = pd.DataFrame({"structure": [structures[0], disordered, structures[1]], "y": [1.0, 2.0, 3.0]})
    out = fitted.featurize_dataframe(df, "structure", ignore_errors=True, pbar=False)
    assert out.shape == (3, 2 + 64)
    assert out.loc[1, "DIM_0":"DIM_63"].isna().all()
    assert out.loc[[0, 2], "DIM_0":"DIM_63"].notna().all().all()
    np.testing.assert_array_equal(out.loc[[0, 2], "DIM_0":"DIM_63"].to_numpy(), fitted.transform(structures[:2]))
    with_errors = fitted.featurize_dataframe(df, "structure", ignore_errors=True, return_errors=True, pbar=False)
    errors = with_errors["DeepInfoMaxFeaturizer Exceptions"]
    assert "structure 1: disordered" in errors[1] and pd.isna(errors[0])
    with pytest.raises(StructureError, match="structure 1: disordered"):
        fitted.featurize_dataframe(df, "structure", pbar=False)


def test_transform_errors_name_the_structure(fitted, structures, disordered):
    with pytest.raises(StructureError, match="structure 2: disordered"):
        fitted.transform([structures[0], structures[1], disordered])
    lenient = clone(fitted).set_params(ignore_errors=True)
    lenient.encoder_ = fitted.encoder_
    X = lenient.transform([structures[0], disordered, "not a structure"])
    assert np.isfinite(X[0]).all() and np.isnan(X[1:]).all()


def test_fit_with_ignore_errors_skips_bad_structures_loudly(structures, disordered):
    with pytest.warns(UserWarning, match="1 of 41 structures could not be featurised"):
        DeepInfoMaxFeaturizer(ignore_errors=True, **QUICK).fit([*list(structures), disordered])
    with pytest.raises(StructureError, match="structure 40"):
        DeepInfoMaxFeaturizer(**QUICK).fit([*list(structures), disordered])


def test_matminer_single_and_many(fitted, structures, disordered):
    row = fitted.featurize(structures[0])
    assert len(row) == 64 and row == pytest.approx(fitted.transform(structures[:1])[0].tolist())
    many = fitted.featurize_many([(s,) for s in structures[:3]], pbar=False)
    assert np.allclose(many, fitted.transform(structures[:3]))
    with pytest.raises(StructureError, match=r"^structure: disordered"):
        fitted.featurize(disordered)
    with pytest.raises(ValueError, match="ignore_errors"):
        fitted.featurize_many(structures[:2], return_errors=True)
    assert any("Site-Net" in c for c in fitted.citations())
    assert any("Deep InfoMax" in c for c in fitted.citations())
    assert fitted.implementors()


def test_save_load_and_pickle_round_trips(fitted, structures, tmp_path):
    expected = fitted.transform(structures)
    fitted.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert set(config["versions"]) == {"dim-sklearn", "torch", "pymatgen"}
    loaded = DeepInfoMaxFeaturizer.load(tmp_path / "model")
    assert np.array_equal(loaded.transform(structures), expected)
    assert loaded.get_params() == {**fitted.get_params(), "encoder": tmp_path / "model"}  # a clone reloads it
    assert loaded.history_ == fitted.history_
    restored = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(restored.transform(structures), expected)


def test_loading_a_bad_file_gives_a_clear_error(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    weights, config = tmp_path / "model" / "encoder.safetensors", tmp_path / "model" / "config.json"
    with pytest.raises(FileNotFoundError, match="not a saved dim-sklearn encoder"):
        DeepInfoMaxFeaturizer.load(tmp_path / "nowhere")
    good = config.read_text()
    config.write_text(good.replace('"width": 64', '"width": 32'))
    with pytest.raises(IncompatibleModelError, match="do not fit the encoder"):
        DeepInfoMaxFeaturizer.load(tmp_path / "model")
    config.write_text(good.replace('"format_version": 2', '"format_version": 99'))
    with pytest.raises(IncompatibleModelError, match="format version 99"):
        DeepInfoMaxFeaturizer.load(tmp_path / "model")
    config.write_text("{not json")
    with pytest.raises(IncompatibleModelError, match="not valid JSON"):
        DeepInfoMaxFeaturizer.load(tmp_path / "model")
    config.write_text(good)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(IncompatibleModelError, match="not a readable safetensors file"):
        DeepInfoMaxFeaturizer.load(tmp_path / "model")


def test_device_auto_resolves_to_cpu_here():
    from dim_sklearn._utils import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"max_epochs": -1}, r"DeepInfoMaxFeaturizer: max_epochs must be an integer >= 0, got -1"),
        ({"width": 8000}, r"width must be an integer from 1 to 1024, got 8000"),
        ({"max_atoms": 100_000}, r"max_atoms must be an integer from 1 to 1000"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be in \[0, 1\), got 1.0"),
        ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
        ({"n_rbf": 1}, r"n_rbf must be 0 \(raw distances\) or an integer from 2 to 256, got 1"),
        ({"max_sites": 0}, "max_sites must be an integer from 1 to 1000, got 0"),
        ({"min_distance": -0.1}, "min_distance must be a finite number >= 0"),
        ({"encoder": 3}, "encoder must be None or a shipped encoder's name, a folder or a PretrainedEncoder, got 3"),
        ({"compile": "yes"}, "compile must be True or False or 'auto', got 'yes'"),
        ({"callbacks": [print]}, "callbacks must be None or a list or tuple of PretrainCallback, got"),
        ({"random_state": -1}, "random_state must be None, an integer from 0 to 2\\*\\*32 - 1 or a numpy RandomState"),
    ],
)
def test_parameters_are_checked_at_the_start_of_fit(structures, params, message):
    with pytest.raises(ValueError, match=message):
        DeepInfoMaxFeaturizer(**params).fit(structures[:4])


def test_callbacks_see_the_pretraining_epochs_and_are_not_saved(structures, tmp_path):
    class Epochs(PretrainCallback):
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, model, history):
            self.seen.append((history[-1]["epoch"], model.encoder.config.width))

    epochs = Epochs()
    featurizer = DeepInfoMaxFeaturizer(max_epochs=2, width=16, random_state=0, callbacks=[epochs]).fit(structures)
    plain = DeepInfoMaxFeaturizer(max_epochs=2, width=16, random_state=0).fit(structures)
    assert epochs.seen == [(1, 16), (2, 16)]
    np.testing.assert_array_equal(featurizer.transform(structures[:3]), plain.transform(structures[:3]))
    featurizer.save(tmp_path / "enc")
    assert DeepInfoMaxFeaturizer.load(tmp_path / "enc").callbacks is None
    assert [type(c) for c in clone(featurizer).callbacks] == [Epochs]  # copied, as skorch clones its callbacks


def test_a_validation_share_that_leaves_too_few_to_train_on(structures):
    with pytest.raises(ValueError, match="holds out 19 of 20 structures, leaving 1 for training"):
        DeepInfoMaxFeaturizer(validation_fraction=0.95, **QUICK).fit(structures[:20])


def test_diverging_pretraining_warns_and_keeps_finite_weights(structures):
    with pytest.warns(RuntimeWarning, match="diverged in epoch 1 .*keeping the initial weights"):
        diverged = DeepInfoMaxFeaturizer(max_epochs=3, lr=1e6, batch_sites=300, random_state=0).fit(structures)
    untrained = DeepInfoMaxFeaturizer(max_epochs=0, random_state=0).fit(structures)
    np.testing.assert_array_equal(diverged.transform(structures[:5]), untrained.transform(structures[:5]))
    assert diverged.best_epoch_ == 0 and diverged.history_ == []


def test_n_jobs_is_a_run_time_setting_shared_with_matminer(perovskite):
    featurizer = DeepInfoMaxFeaturizer(n_jobs=2)
    assert featurizer.get_params()["n_jobs"] == 2
    featurizer.set_n_jobs(3)  # matminer's setter
    assert featurizer.get_params()["n_jobs"] == 3
    assert DeepInfoMaxFeaturizer.from_pretrained(n_jobs=2).n_jobs == 2
    with pytest.raises(ValueError, match="n_jobs"):
        DeepInfoMaxFeaturizer(n_jobs="two", max_epochs=0).fit([perovskite] * 4)


def test_defaults_and_rules_come_from_the_settings_dataclasses_and_the_docstring_states_them():
    import ast
    import dataclasses
    import inspect
    import re

    from dim_sklearn.nn import EncoderConfig, ObjectiveSettings
    from dim_sklearn.pretrain import PretrainSettings

    signature = inspect.signature(DeepInfoMaxFeaturizer).parameters
    shared = 0
    for settings in (PointSetConfig, EncoderConfig, ObjectiveSettings, PretrainSettings):
        for field in dataclasses.fields(settings):
            if field.name in signature:
                shared += 1
                assert signature[field.name].default == field.default, field.name
                assert DeepInfoMaxFeaturizer._PARAM_RULES[field.name] is settings.FIELD_RULES[field.name]
    assert shared == 20
    documented = {}
    for names, values in re.findall(r"^    ([\w, ]+) : .*default=(.+)$", DeepInfoMaxFeaturizer.__doc__, re.M):
        names, values = names.split(", "), [v.strip() for v in values.split(", ")]
        documented.update(zip(names, values if len(values) == len(names) else [", ".join(values)]))
    assert set(documented) == set(signature)
    for name, text in documented.items():
        assert ast.literal_eval(text) == signature[name].default, name
