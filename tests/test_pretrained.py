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
from dim_sklearn.nn import CHANCE
from dim_sklearn.pretrained import DEFAULT_PRETRAINED, list_pretrained, pretrained_path

REPO = Path(__file__).resolve().parents[1]


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
    np.testing.assert_allclose(feat.transform(six_crystals()), recorded, rtol=1e-6, atol=1e-7)
    artifact = PretrainedEncoder.load(pretrained_path())
    assert artifact.point_set_config == feat.encoder_.point_set_config
    assert all(torch.equal(artifact.state_dict()[k], v) for k, v in feat.encoder_.state_dict().items())
