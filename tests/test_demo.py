"""The main job runs on a fresh machine: the embedded data set, no data folder, no data variables."""

import numpy as np
import pytest

from dim_sklearn import load_dataset
from dim_sklearn.datasets import DatasetNotFoundError
from dim_sklearn.demo import compare_features, format_table


def test_demo_runs_on_the_embedded_set_without_a_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("DIM_SKLEARN_DATA", raising=False)
    monkeypatch.delenv("MATMINER_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError):  # no data folder is reachable
        load_dataset("mp_cs419")

    table, info = compare_features(limit=120, label_counts=(10, 50), repeats=2, max_epochs=1, verbose=False)
    assert (info["dataset"], info["target"]) == ("mp_crysxpp_2k", "formation_energy_per_atom")
    assert (info["n_train"], info["n_test"], info["epochs"]) == (96, 24, 1)
    assert table.index.tolist() == [10, 50]
    maes = table[["DIM MAE", "untrained MAE"]].to_numpy()
    assert np.isfinite(maes).all() and (maes > 0).all() and (maes < 2).all()  # eV/atom; the std is about 1.1
    assert "RandomForest test MAE on mp_crysxpp_2k formation_energy_per_atom (24 test structures)" in format_table(
        table, info)
