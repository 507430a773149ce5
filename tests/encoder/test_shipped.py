"""The encoder that ships with the package: loads with no data and no training, gives finite vectors."""

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from crystals import six_crystals
from pymatgen.core import Lattice, Structure

from dim_sklearn import DeepInfoMaxFeaturizer, PretrainedEncoder, SiteNetRegressor
from dim_sklearn.encoder import DEFAULT_PRETRAINED, list_pretrained, pretrained_path
from dim_sklearn.nn import CHANCE

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_data(monkeypatch):
    for name in ("DIM_SKLEARN_DATA", "MATMINER_DATA"):
        monkeypatch.delenv(name, raising=False)


def test_default_encoder_ships_and_gives_finite_distinct_vectors_without_data(no_data):
    assert DEFAULT_PRETRAINED in list_pretrained()
    feat = DeepInfoMaxFeaturizer.from_pretrained()
    X = feat.transform(six_crystals())
    assert X.shape == (6, feat.global_dim) and np.isfinite(X).all()
    assert np.abs(X[0] - X[2]).max() > 1e-3  # the lattice constant changes the vector
    assert feat.get_params()["cache_dir"] is None and feat.get_params()["checkpoint_dir"] is None


def test_shipped_metadata_records_corpus_settings_and_a_learnt_objective():
    meta = DeepInfoMaxFeaturizer.from_pretrained().metadata_
    corpus = meta["corpus"]
    listed = (REPO / "docs" / "results" / corpus["file"]).read_bytes()
    text = gzip.decompress(listed).decode()
    assert hashlib.sha256(text.encode()).hexdigest() == corpus["sha256"]
    assert len(text.splitlines()) - 1 == corpus["n_structures"] == sum(corpus["sets"].values())
    held_out = meta["held_out"]
    assert held_out["chance"] == pytest.approx(CHANCE)
    assert held_out["best_global_dim"] < 0.8 * CHANCE and held_out["best_local_dim"] < held_out["first_local_dim"]
    assert meta["epochs"] >= meta["best_epoch"] >= 1 and meta["settings"]["n_rbf"] == 16


def test_shipped_weights_are_small():
    size = (pretrained_path() / "encoder.safetensors").stat().st_size
    assert size < 1_000_000


def test_from_pretrained_takes_runtime_settings_only():
    feat = DeepInfoMaxFeaturizer.from_pretrained(ignore_errors=True, device="cpu")
    assert feat.ignore_errors and feat.device == "cpu"
    bad = Structure(Lattice.cubic(3.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    bad.replace_species({"Na": {"Na": 0.5, "K": 0.5}})  # disordered: a NaN row, not an error
    X = feat.transform([six_crystals()[0], bad])
    assert np.isfinite(X[0]).all() and np.isnan(X[1]).all()
    with pytest.raises(ValueError, match="run-time settings only"):
        DeepInfoMaxFeaturizer.from_pretrained(width=32)
    with pytest.raises(ValueError, match="no shipped encoder named 'nope'"):
        DeepInfoMaxFeaturizer.from_pretrained("nope")


def test_regressor_starts_from_the_shipped_encoder(no_data):
    crystals = six_crystals()
    reg = SiteNetRegressor(encoder="pretrained", max_epochs=1, random_state=0).fit(crystals, np.arange(6.0))
    assert np.isfinite(reg.predict(crystals)).all()
    shipped = DeepInfoMaxFeaturizer.from_pretrained().encoder_.state_dict()
    start = SiteNetRegressor(encoder="pretrained", random_state=0).initialize().module_.encoder.state_dict()
    assert all(np.array_equal(start[k].numpy(), v.numpy()) for k, v in shipped.items())


def test_saved_metadata_round_trips(tmp_path):
    feat = DeepInfoMaxFeaturizer(max_epochs=0, random_state=0).fit(six_crystals()[:2])
    assert feat.metadata_ == {}
    feat.save(tmp_path / "enc", metadata={"corpus": {"n_structures": 2}})
    loaded = DeepInfoMaxFeaturizer.load(tmp_path / "enc")
    assert loaded.metadata_ == {"corpus": {"n_structures": 2}}
    saved = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert saved["provenance"]["metadata"]["corpus"]["n_structures"] == 2
    loaded.save(tmp_path / "again")  # keeps what it was loaded with
    assert DeepInfoMaxFeaturizer.load(tmp_path / "again").metadata_ == loaded.metadata_


def test_the_shipped_encoder_passes_every_loaders_checks_and_gives_its_recorded_vectors(no_data):
    """``tests/data/dim-38k_features.json``: the shipped encoder's vectors of ``six_crystals()``, recorded once."""
    recorded = json.loads((REPO / "tests" / "data" / "dim-38k_features.json").read_text())
    feat = DeepInfoMaxFeaturizer.from_pretrained()
    np.testing.assert_allclose(feat.transform(six_crystals()), recorded, rtol=0, atol=2e-6)  # float32 sums: threads
    artifact = PretrainedEncoder.load(pretrained_path())
    assert artifact.point_set_config == feat.encoder_.point_set_config
    assert all(torch.equal(artifact.state_dict()[k], v) for k, v in feat.encoder_.state_dict().items())


# ---------------------------------------------------------------- the encoder as a parameter


@pytest.fixture
def no_pretraining(monkeypatch):
    """Any pretraining fails the test: a featurizer given an encoder must not train."""

    def refuse(*args, **kwargs):
        raise AssertionError("pretrained although an encoder was given")

    monkeypatch.setattr("dim_sklearn.featurizer.pretrain", refuse)


def _labelled():
    structures = six_crystals() * 2
    return structures, np.arange(len(structures), dtype=float) % 5


def test_a_pipeline_on_the_shipped_encoder_keeps_it_through_cross_validation(no_data, no_pretraining):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import GridSearchCV, cross_val_predict
    from sklearn.pipeline import make_pipeline

    structures, y = _labelled()
    shipped = DeepInfoMaxFeaturizer.from_pretrained()
    assert shipped.get_params()["encoder"] == DEFAULT_PRETRAINED
    pipe = make_pipeline(shipped, RandomForestRegressor(n_estimators=20, random_state=0))
    predicted = cross_val_predict(pipe, structures, y, cv=3)
    forest = RandomForestRegressor(n_estimators=20, random_state=0)
    expected = cross_val_predict(forest, shipped.transform(structures), y, cv=3)
    np.testing.assert_array_equal(predicted, expected)  # every fold's vectors were the shipped encoder's
    search = GridSearchCV(pipe, {"randomforestregressor__max_depth": [2, None]}, cv=2).fit(structures, y)
    np.testing.assert_array_equal(search.best_estimator_[0].transform(structures), shipped.transform(structures))


def test_clone_pickle_and_a_given_encoder_object_give_the_shipped_vectors(no_data, no_pretraining, tmp_path):
    import pickle

    from sklearn.base import clone

    structures = six_crystals()
    shipped = DeepInfoMaxFeaturizer.from_pretrained()
    expected = shipped.transform(structures)
    candidates = [
        clone(shipped).fit(structures[:1]),
        pickle.loads(pickle.dumps(clone(shipped))).fit(structures[:1]),
        DeepInfoMaxFeaturizer(encoder=PretrainedEncoder.load(DEFAULT_PRETRAINED)).fit(structures[:1]),
        DeepInfoMaxFeaturizer(encoder=pretrained_path()).fit(structures[:1]),
    ]
    shipped.save(tmp_path / "copy")
    loaded = DeepInfoMaxFeaturizer.load(tmp_path / "copy")
    assert loaded.get_params()["encoder"] == tmp_path / "copy"
    candidates.append(clone(loaded).fit(structures[:1]))
    for featurizer in candidates:
        np.testing.assert_array_equal(featurizer.transform(structures), expected)


def test_model_parameters_that_contradict_the_given_encoder_are_refused(no_pretraining):
    with pytest.raises(ValueError, match=r"has width=64, but the featurizer was given width=128"):
        DeepInfoMaxFeaturizer(encoder=DEFAULT_PRETRAINED, width=128).fit(six_crystals())
    with pytest.raises(ValueError, match="no shipped encoder named 'dim-1'"):
        DeepInfoMaxFeaturizer.from_pretrained("dim-1")
    with pytest.raises(FileNotFoundError):
        DeepInfoMaxFeaturizer(encoder="no/such/folder").fit(six_crystals())
