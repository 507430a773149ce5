"""Saved models and pretraining checkpoints are untrusted input: damaged or hostile files fail clearly, early."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import dim_sklearn.encoder.format as io
from dim_sklearn import DeepInfoMaxFeaturizer, IncompatibleModelError

FAST = dict(batch_sites=300, patience=50, random_state=0)


@pytest.fixture(scope="module")
def saved(structures, tmp_path_factory):
    """A folder written by DeepInfoMaxFeaturizer.save, and the features it gives."""
    folder = tmp_path_factory.mktemp("model") / "model"
    featurizer = DeepInfoMaxFeaturizer(max_epochs=0, random_state=0).fit(structures)
    featurizer.save(folder)
    return folder, featurizer.transform(structures[:5])


def _copy(source, folder):
    folder.mkdir()
    for name in ("config.json", "encoder.safetensors"):
        (folder / name).write_bytes((source / name).read_bytes())
    return folder


@pytest.fixture
def model(saved, tmp_path):
    """A fresh copy of the saved folder, to damage."""
    return _copy(saved[0], tmp_path / "model")


def _edit_config(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["encoder"].update(width=8000), "width must be an integer from 1 to 1024, got 8000"),
        (lambda c: c["encoder"].update(width=-64), "width must be an integer from 1 to 1024, got -64"),
        (lambda c: c["encoder"].update(global_dim=64.5), "global_dim must be an integer"),
        (lambda c: c["encoder"].update(n_rbf=100000), r"n_rbf must be 0 \(raw distances\) or an integer from 2 to 256"),
        (lambda c: c["encoder"].update(rbf_cutoff=float("nan")), "rbf_cutoff must be a finite number"),
        (lambda c: c["encoder"].update(hidden="yes"), "unknown encoder field"),
        (lambda c: c.update(encoder=[1, 2]), "no encoder section"),
        (lambda c: c["encoder"].update(rbf_cutoff=6.0), "not an encoder DeepInfoMaxFeaturizer trains"),
        (lambda c: c.update(format_version=3, versions="x"), "format version 3"),
        (lambda c: c["point_set"].update(max_atoms=100000), "max_atoms must be an integer from 1 to 1000, got 100000"),
        (lambda c: c["point_set"].update(max_atoms=50.0), "max_atoms must be an integer"),
        (lambda c: c["point_set"].update(max_sites=0), "max_sites must be an integer from 1 to 1000, got 0"),
        (lambda c: c["point_set"].update(max_sites=10**12), "max_sites must be an integer from 1 to 1000"),
        (lambda c: c["point_set"].update(oxidation="yes"), "oxidation must be True or False"),
        (lambda c: c["point_set"].update(min_distance=float("inf")), "min_distance must be a finite number >= 0"),
        (lambda c: c["point_set"].update(oxidation=True), "gives 9 site features, the encoder reads 8"),
        (lambda c: c["point_set"].update(hidden=1), "unknown point_set field"),
        (lambda c: c["point_set"].pop("max_sites"), "lacks max_sites"),
        (lambda c: c.pop("point_set"), "no point_set section"),
        (lambda c: c["provenance"]["settings"].update(kl_weight="0.1"), "kl_weight must be a finite number"),
        (lambda c: c["provenance"]["settings"].update(kl_weight=[0.1]), "settings is not an object of numbers"),
        (lambda c: c["provenance"].update(versions={"torch": 2}), "versions is not an object of strings"),
        (lambda c: c["provenance"].update(history={"loss": 1}), "history"),
        (lambda c: c["provenance"].update(best_epoch=-1), "best_epoch"),
        (lambda c: c["provenance"].update(metadata=[1]), "metadata"),
        (lambda c: c["provenance"].update(params={}), "unknown provenance field"),
        (lambda c: c.update(provenance=None), "no provenance section"),
    ],
)
def test_every_config_field_is_checked_and_no_oversized_encoder_is_built(model, monkeypatch, edit, message):
    _edit_config(model, edit)
    built, build = [], io.SiteNetEncoder

    def recording(config):
        built.append(config)
        return build(config)

    monkeypatch.setattr(io, "SiteNetEncoder", recording)
    with pytest.raises(IncompatibleModelError, match=message) as info:
        DeepInfoMaxFeaturizer.load(model)
    assert str(model) in str(info.value)
    assert all(max(c.width, c.local_dim, c.global_width, c.global_dim) <= io.MAX_WIDTH for c in built)


def test_oversized_and_deeply_nested_json_is_refused_unparsed(model):
    config = model / "config.json"
    config.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(IncompatibleModelError, match="nested 200000 levels deep, more than the 32 accepted"):
        DeepInfoMaxFeaturizer.load(model)
    config.write_text(" " * (io.MAX_CONFIG_BYTES + 1))
    with pytest.raises(IncompatibleModelError, match="more than the 4,194,304 accepted"):
        DeepInfoMaxFeaturizer.load(model)
    config.write_bytes(b"\xff\xfe{}")
    with pytest.raises(IncompatibleModelError, match="not valid JSON"):
        DeepInfoMaxFeaturizer.load(model)


def test_brackets_and_escapes_inside_strings_do_not_count_as_nesting(model, saved, structures):
    deep_looking = '[[[[{"\\"' * 40  # a string of brackets, quotes and backslashes: one value, depth 0
    nested = {"note": deep_looking, "nested": {"a": [[1, [2]]]}}
    _edit_config(model, lambda c: c["provenance"].update(metadata=nested))
    loaded = DeepInfoMaxFeaturizer.load(model)
    assert loaded.metadata_["note"] == deep_looking
    np.testing.assert_array_equal(loaded.transform(structures[:5]), saved[1])


def test_settings_of_the_machine_are_not_taken_from_the_file(model, tmp_path):
    hostile = {
        "cache_dir": "../escaped_cache",
        "checkpoint_dir": "/tmp/elsewhere",
        "device": "cuda:7",
        "ignore_errors": True,
        "verbose": 2,
    }
    _edit_config(model, lambda c: c["provenance"]["settings"].update(hostile))
    loaded = DeepInfoMaxFeaturizer.load(model)
    defaults = DeepInfoMaxFeaturizer().get_params()
    assert {k: loaded.get_params()[k] for k in hostile} == {k: defaults[k] for k in hostile}
    assert loaded.set_params(cache_dir=str(tmp_path / "mine")).cache_dir == str(tmp_path / "mine")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: {**s, "global_.mu.weight": s["global_.mu.weight"] * np.nan}, "NaN or infinite weights"),
        (lambda s: {**s, "global_.mu.bias": s["global_.mu.bias"] + np.inf}, "NaN or infinite weights"),
        (lambda s: {**s, "global_.mu.weight": s["global_.mu.weight"].double()}, "F64 .*expected F32"),
        (lambda s: {**s, "global_.mu.weight": s["global_.mu.weight"][:10]}, r"\[10, 64\], expected F32 \[64, 64\]"),
        (lambda s: {**s, "extra": torch.zeros(3)}, "unexpected tensor extra"),
        (lambda s: {k: v for k, v in s.items() if k != "global_.mu.bias"}, "global_.mu.bias is missing"),
        (lambda s: {**s, "padding": torch.zeros(2_000_000)}, "more than the .* its encoder needs"),
    ],
)
def test_weights_must_be_finite_and_fit_exactly(model, damage, message):
    weights = model / "encoder.safetensors"
    save_file(damage(load_file(str(weights))), str(weights))
    with pytest.raises(IncompatibleModelError, match=message) as info:
        DeepInfoMaxFeaturizer.load(model)
    assert str(weights) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\xff" * 16])
def test_garbage_weights(model, content):
    (model / "encoder.safetensors").write_bytes(content)
    with pytest.raises(IncompatibleModelError, match="not a readable safetensors file"):
        DeepInfoMaxFeaturizer.load(model)


# ---------------------------------------------------------------- pretraining checkpoints


@pytest.fixture(scope="module")
def checkpoint(structures, tmp_path_factory):
    """The checkpoint of a 1-epoch run, as bytes, and that run's weights."""
    folder = tmp_path_factory.mktemp("run")
    featurizer = DeepInfoMaxFeaturizer(max_epochs=1, checkpoint_dir=str(folder), **FAST).fit(structures)
    return (folder / "checkpoint.pt").read_bytes(), featurizer.encoder_.state_dict()


def _resume(structures, folder):
    return DeepInfoMaxFeaturizer(max_epochs=2, checkpoint_dir=str(folder), **FAST).fit(structures)


def _flip_bit(state):
    weight = state["model"]["encoder.global_.mu.weight"]
    weight.view(torch.int32)[3, 5] ^= 1 << 20
    return state


def _nan_weights(state):
    from dim_sklearn.pretrain.checkpoint import checksum

    state["model"]["encoder.global_.mu.weight"][0, 0] = float("nan")
    state["checksum"] = checksum(state)  # a consistent file that holds NaN
    return state


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[: len(raw) // 2], "cannot be read"),
        (lambda raw: raw[:100], "cannot be read"),
        (lambda raw: b"", "cannot be read"),
        (lambda raw: b"\x80\x02garbage" * 50, "cannot be read"),
        (
            lambda raw: raw[: len(raw) // 2] + bytes([raw[len(raw) // 2] ^ 0x10]) + raw[len(raw) // 2 + 1 :],
            "cannot be read|checksum does not match",
        ),
        ("flip", "checksum does not match"),
        ("nan", "NaN or infinite weights"),
        ("keys", "does not hold a checkpoint's contents"),
        ("legacy", "written without a checksum"),
    ],
)
def test_damaged_checkpoints_are_refused_naming_the_file(structures, checkpoint, tmp_path, damage, message):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(checkpoint[0])
    if isinstance(damage, str):
        state = torch.load(path, weights_only=True)
        state = {
            "flip": _flip_bit,
            "nan": _nan_weights,
            "keys": lambda s: {"model": s["model"]},
            "legacy": lambda s: {k: v for k, v in s.items() if k != "checksum"},
        }[damage](state)
        torch.save(state, path)
    else:
        path.write_bytes(damage(checkpoint[0]))
    with pytest.raises(IncompatibleModelError, match=message) as info:
        _resume(structures, tmp_path)
    assert str(path) in str(info.value) and "weights_only" not in str(info.value)


def test_an_intact_checkpoint_still_resumes(structures, checkpoint, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(checkpoint[0])
    resumed = _resume(structures, tmp_path)
    assert [h["epoch"] for h in resumed.history_] == [1, 2]


def test_every_deliberate_error_shares_one_base_and_keeps_its_builtin_type():
    from dim_sklearn import DatasetNotFoundError, DimSklearnError, IncompatibleModelError, StructureError

    assert issubclass(StructureError, DimSklearnError) and issubclass(StructureError, ValueError)
    assert issubclass(IncompatibleModelError, DimSklearnError) and issubclass(IncompatibleModelError, ValueError)
    assert issubclass(DatasetNotFoundError, DimSklearnError) and issubclass(DatasetNotFoundError, FileNotFoundError)
