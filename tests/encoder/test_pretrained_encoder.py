"""PretrainedEncoder: the trained encoder as an artifact of its own, and files of the earlier format."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from crystals import six_crystals

from dim_sklearn import (
    DeepInfoMaxFeaturizer,
    IncompatibleModelError,
    PointSetConfig,
    PretrainedEncoder,
    SiteNetRegressor,
)
from dim_sklearn.nn import EncoderConfig, SiteNetEncoder

DATA = Path(__file__).resolve().parents[1] / "data"


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.fixture(scope="module")
def fitted():
    return DeepInfoMaxFeaturizer(
        max_sites=40, min_distance=0.3, max_epochs=1, validation_fraction=0.34, random_state=0
    ).fit(six_crystals())


def test_a_file_of_another_format_version_is_refused_naming_it(fitted, tmp_path):
    fitted.save(tmp_path / "enc")
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["format_version"] == 2
    assert set(config) == {"format", "format_version", "versions", "encoder", "point_set", "provenance"}
    for version in (1, 3):
        (tmp_path / "enc" / "config.json").write_text(json.dumps({**config, "format_version": version}))
        with pytest.raises(IncompatibleModelError, match=f"format version {version}; this dim-sklearn reads version 2"):
            PretrainedEncoder.load(tmp_path / "enc")


def test_the_featurizer_saves_its_point_set_limits_and_settings_in_the_artifact(fitted, tmp_path):
    encoder = fitted.encoder_
    assert encoder.point_set_config == PointSetConfig(max_atoms=50, max_sites=40, oxidation=False, min_distance=0.3)
    assert encoder.provenance["settings"]["validation_fraction"] == 0.34
    assert encoder.provenance["history"] is fitted.history_ and fitted.best_epoch_ == 1
    fitted.save(tmp_path / "enc")
    loaded = DeepInfoMaxFeaturizer.load(tmp_path / "enc")
    assert loaded.get_params() == {**fitted.get_params(), "encoder": tmp_path / "enc"}
    assert loaded.encoder_.point_set_config == encoder.point_set_config
    np.testing.assert_array_equal(loaded.transform(six_crystals()), fitted.transform(six_crystals()))


def test_settings_the_featurizer_does_not_know_are_kept_as_information(fitted, tmp_path):
    fitted.save(tmp_path / "enc")
    config_path = tmp_path / "enc" / "config.json"
    config = json.loads(config_path.read_text())
    config["provenance"]["settings"]["a_later_option"] = 3
    config_path.write_text(json.dumps(config))
    loaded = DeepInfoMaxFeaturizer.load(tmp_path / "enc")
    assert loaded.encoder_.provenance["settings"]["a_later_option"] == 3
    assert "a_later_option" not in loaded.get_params()


def test_as_dict_and_from_dict_round_trip_and_check_the_weights(fitted):
    encoder = fitted.encoder_
    document = json.loads(json.dumps(encoder.as_dict()))
    again = PretrainedEncoder.from_dict(document, encoder.state_dict())
    assert again.config == encoder.config and again.point_set_config == encoder.point_set_config
    assert again.provenance == encoder.provenance and _same_weights(again.state_dict(), encoder.state_dict())
    nan = {**encoder.state_dict(), "global_.mu.bias": torch.full_like(encoder.state_dict()["global_.mu.bias"], np.nan)}
    with pytest.raises(IncompatibleModelError, match=r"NaN or infinite weights in global_.mu.bias"):
        PretrainedEncoder.from_dict(document, nan)
    with pytest.raises(IncompatibleModelError, match=r"global_.mu.bias is missing"):
        PretrainedEncoder.from_dict(document, {k: v for k, v in encoder.state_dict().items() if k != "global_.mu.bias"})
    with pytest.raises(IncompatibleModelError, match="max_atoms must be an integer"):
        PretrainedEncoder.from_dict(
            {**document, "point_set": {**document["point_set"], "max_atoms": -1}}, encoder.state_dict()
        )


def test_the_artifact_refuses_a_point_set_its_encoder_cannot_read():
    encoder = SiteNetEncoder(EncoderConfig(width=4, local_dim=2, global_width=4, global_dim=3))
    with pytest.raises(ValueError, match="gives 9 site features, the encoder reads 8"):
        PretrainedEncoder(encoder, PointSetConfig(oxidation=True))
    with pytest.raises(ValueError, match="unknown provenance entries corpus"):
        PretrainedEncoder(encoder, PointSetConfig(), {"corpus": "mine"})
    made = PretrainedEncoder(encoder, PointSetConfig())
    assert made.provenance["history"] == [] and set(made.provenance["versions"]) == {"dim-sklearn", "torch", "pymatgen"}


def test_the_regressor_starts_from_an_artifact_or_its_folder_with_its_point_set(fitted, tmp_path):
    encoder = fitted.encoder_
    fitted.save(tmp_path / "enc")
    for start in (encoder, tmp_path / "enc", str(tmp_path / "enc"), fitted):
        reg = SiteNetRegressor(encoder=start, random_state=0).initialize()
        assert _same_weights(reg.module_.encoder.state_dict(), encoder.state_dict())
        assert reg.point_set_config_ == encoder.point_set_config
    reg = SiteNetRegressor(encoder=encoder, max_atoms=30, max_sites=5, min_distance=0.1, random_state=0).initialize()
    assert reg.point_set_config_ == PointSetConfig(max_atoms=30, max_sites=5, oxidation=False, min_distance=0.1)
    assert SiteNetRegressor().initialize().point_set_config_ == PointSetConfig()


def test_max_sites_and_min_distance_refuse_structures_in_both_estimators(fitted):
    crystals = six_crystals()  # input cells of 2, 2, 2, 1, 2 and 5 sites
    strict = DeepInfoMaxFeaturizer.from_pretrained(max_sites=1, ignore_errors=True)
    X = strict.transform(crystals)
    assert np.isfinite(X[3]).all() and np.isnan(np.delete(X, 3, axis=0)).all()
    with pytest.raises(ValueError, match="overlapping atoms"):
        DeepInfoMaxFeaturizer.from_pretrained(min_distance=3.5).transform(crystals[:1])
    reg = SiteNetRegressor(encoder=fitted.encoder_, max_sites=4, max_epochs=1, random_state=0)
    with pytest.raises(ValueError, match="structure 5"):
        reg.fit(crystals, np.arange(6.0))


DOORS = {
    "DeepInfoMaxFeaturizer.load": DeepInfoMaxFeaturizer.load,
    "PretrainedEncoder.load": PretrainedEncoder.load,
    "SiteNetRegressor(encoder=path)": lambda path: SiteNetRegressor(encoder=path).initialize(),
}
"""Every way a saved encoder is loaded from its folder."""


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    """A small encoder saved by the featurizer."""
    folder = tmp_path_factory.mktemp("small") / "enc"
    DeepInfoMaxFeaturizer(max_epochs=0, width=4, local_dim=2, global_width=4, global_dim=3, n_rbf=2).fit(
        six_crystals()[:1]
    ).save(folder)
    return folder


def _zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", "{}")
    return buffer.getvalue()


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("name", ["config.json", "encoder.safetensors"])
@pytest.mark.parametrize(
    "content",
    [
        lambda whole: b"epoch 3\nloss 0.5\n",
        lambda whole: b"",
        lambda whole: whole[: len(whole) // 2],
        lambda whole: whole[:-1],
        lambda whole: np.random.default_rng(0).bytes(len(whole)),
        lambda whole: _zip_archive(),
    ],
    ids=["text", "empty", "half", "all but the last byte", "random bytes", "zip archive"],
)
def test_every_damaged_file_is_refused_by_every_door_naming_it(small_folder, tmp_path, door, name, content):
    folder = tmp_path / "enc"
    folder.mkdir()
    for part in ("config.json", "encoder.safetensors"):
        whole = (small_folder / part).read_bytes()
        (folder / part).write_bytes(content(whole) if part == name else whole)
    with pytest.raises(IncompatibleModelError) as info:
        DOORS[door](folder)
    assert str(folder / name) in str(info.value)


def _edited(source, folder, edit):
    folder.mkdir()
    (folder / "encoder.safetensors").write_bytes((source / "encoder.safetensors").read_bytes())
    config = json.loads((source / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


HOSTILE = {
    "lr 'evil'": (
        lambda c: c["provenance"]["settings"].update(lr="evil"),
        "lr must be a finite number > 0, got 'evil'",
    ),
    "kl_weight -1": (lambda c: c["provenance"]["settings"].update(kl_weight=-1), "kl_weight must be a finite number"),
    "random_state -1": (lambda c: c["provenance"]["settings"].update(random_state=-1), "random_state must be None"),
    "max_sites 1e12": (
        lambda c: c["point_set"].update(max_sites=10**12),
        "max_sites must be an integer from 1 to 1000",
    ),
    "max_atoms 1e6": (lambda c: c["point_set"].update(max_atoms=10**6), "max_atoms must be an integer from 1 to 1000"),
    "width 1e6": (lambda c: c["encoder"].update(width=10**6), "width must be an integer from 1 to 1024"),
    "n_site_features 1e6": (
        lambda c: c["encoder"].update(n_site_features=10**6),
        "n_site_features must be an integer from 1 to 1024",
    ),
    "n_rbf 1e6": (lambda c: c["encoder"].update(n_rbf=10**6), "n_rbf must be 0 .* from 2 to 256"),
}


@pytest.mark.parametrize("door", [*DOORS, "PretrainedEncoder.from_dict"])
@pytest.mark.parametrize("case", HOSTILE)
def test_every_door_refuses_a_file_by_the_same_rules_naming_file_and_field(small_folder, tmp_path, door, case):
    edit, message = HOSTILE[case]
    folder = _edited(small_folder, tmp_path / "enc", edit)
    if door == "PretrainedEncoder.from_dict":
        document = json.loads((folder / "config.json").read_text())
        weights = PretrainedEncoder.load(small_folder).state_dict()
        with pytest.raises(IncompatibleModelError, match=message):
            PretrainedEncoder.from_dict(document, weights)
        return
    with pytest.raises(IncompatibleModelError, match=message) as info:
        DOORS[door](folder)
    assert str(folder / "config.json") in str(info.value)


def test_the_caps_hold_for_values_given_directly():
    from dim_sklearn.nn import SiteNetConfig
    from dim_sklearn.pointsets import MAX_SITES

    assert MAX_SITES >= 256 >= 200  # the default, and the largest structures of the real data sets
    with pytest.raises(ValueError, match="max_sites must be an integer from 1 to 1000, got 1000000000000"):
        PointSetConfig(max_sites=10**12)
    with pytest.raises(ValueError, match="global_width must be an integer from 1 to 1024, got 100000"):
        EncoderConfig(global_width=100_000)
    with pytest.raises(ValueError, match="attention_hidden must be an integer from 1 to 1024"):
        SiteNetConfig(attention_hidden=100_000)
    with pytest.raises(ValueError, match="DeepInfoMaxFeaturizer: max_sites must be an integer from 1 to 1000"):
        DeepInfoMaxFeaturizer(max_sites=10**12).fit(six_crystals())
    with pytest.raises(ValueError, match="SiteNetRegressor: max_sites must be None or an integer from 1 to 1000"):
        SiteNetRegressor(max_sites=10**12).initialize()
    with pytest.raises(ValueError, match="max_sites must be an integer from 1 to 1000"):
        DeepInfoMaxFeaturizer.from_pretrained(max_sites=10**12).transform(six_crystals())
    encoder = SiteNetEncoder(EncoderConfig(width=4, local_dim=2, global_width=4, global_dim=3))
    with pytest.raises(ValueError, match="unusable provenance: lr must be a finite number > 0"):
        PretrainedEncoder(encoder, PointSetConfig(), {"settings": {"lr": "evil"}})


def test_the_largest_structures_accepted_by_default_featurise():
    from pymatgen.core import Lattice, Structure

    cells = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)[:100]
    frac = np.concatenate([cells, cells + 0.5]) / 5  # 200 sites, as the largest structures of the real data sets
    large = Structure(Lattice.cubic(5 * 3.0), ["Cs"] * 100 + ["Cl"] * 100, frac)
    assert len(large) == 200
    X = DeepInfoMaxFeaturizer.from_pretrained().transform([large])
    assert np.isfinite(X).all()
