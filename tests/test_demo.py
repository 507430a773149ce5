"""The main job runs on a fresh machine: the embedded data set and the shipped encoder, no data folder."""

import numpy as np
import pytest

from dim_sklearn import DatasetNotFoundError, DeepInfoMaxFeaturizer, load_dataset
from experiments.cli import main as experiments_main
from experiments.demo import FINE_TUNED, FOREST_FEATURES, format_table, plot_table, run_demo


@pytest.fixture
def fresh_machine(monkeypatch, tmp_path):
    monkeypatch.delenv("DIM_SKLEARN_DATA", raising=False)
    monkeypatch.delenv("MATMINER_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError):  # no data folder is reachable
        load_dataset("mp_cs419")
    return tmp_path


def test_demo_runs_on_the_embedded_set_with_the_shipped_encoder(fresh_machine):
    table, info = run_demo(
        limit=120, label_counts=(10, 50), repeats=2, finetune_counts=(10,), finetune_samples=100, verbose=False
    )
    assert (info["dataset"], info["target"], info["n_train"], info["n_test"]) == (
        "mp_crysxpp_2k",
        "formation_energy_per_atom",
        96,
        24,
    )
    assert info["encoder"]["corpus"]["n_structures"] > 30_000  # the shipped encoder, not a fresh one
    assert table.index.tolist() == [10, 50]
    forests = table[[f"{name} MAE" for name in FOREST_FEATURES]].to_numpy()
    assert np.isfinite(forests).all() and (forests > 0).all() and (forests < 2).all()  # eV/atom; std about 1.1
    tuned = table[[f"{name} MAE" for name in FINE_TUNED]]
    assert np.isfinite(tuned.loc[10]).all() and tuned.loc[50].isna().all()  # fine-tuned at 10 labels only
    text = format_table(table, info)
    assert "mp_crysxpp_2k formation_energy_per_atom, 24 test structures" in text and "none of these" in text
    png = plot_table(table, info, fresh_machine / "demo.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_command_writes_the_plot(fresh_machine):
    assert experiments_main(["demo", "--limit", "80", "--repeats", "1", "--finetune-samples", "50"]) == 0
    assert (fresh_machine / "dim-sklearn-demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_runs_on_another_data_set_and_target_with_a_saved_encoder(tmp_path, data_home):
    structures = load_dataset("matbench_phonons")[0][:4]
    DeepInfoMaxFeaturizer(max_epochs=0, random_state=0).fit(structures).save(tmp_path / "enc")
    table, info = run_demo(
        "mp_cs419", "band_gap", limit=100, repeats=1, finetune_samples=50, encoder=str(tmp_path / "enc"), verbose=False
    )
    assert (info["dataset"], info["target"], info["n_train"], info["n_test"]) == ("mp_cs419", "band_gap", 80, 20)
    assert table.index.tolist() == [50, 80]  # 100, 250 and 1,000 labels capped at the 80 training rows
    assert np.isfinite(table.loc[50, [f"{name} MAE" for name in (*FOREST_FEATURES, *FINE_TUNED)]]).all()
    assert table.loc[80, [f"{name} MAE" for name in FINE_TUNED]].isna().all()
    assert "DIM = the given encoder" in format_table(table, info)
