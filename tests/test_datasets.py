import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure
from sklearn.model_selection import train_test_split

from dim_sklearn import list_datasets, load_dataset
from dim_sklearn.datasets import DatasetNotFoundError, get_data_home

REPO = Path(__file__).resolve().parents[1]
DOCUMENTED = {
    "matbench_phonons": (1265, ["last phdos peak"]),
    "flla": (3938, ["formation_energy_per_atom", "e_above_hull"]),
    "dielectric_constant": (1056, ["n", "poly_electronic", "poly_total", "band_gap"]),
    "elastic_tensor_2015": (1181, ["K_VRH", "G_VRH"]),
    "piezoelectric_tensor": (941, ["eij_max"]),
    "mp_cs419": (3202, ["formation_energy_per_atom", "band_gap", "is_metal", "K_VRH", "G_VRH"]),
    "perov5": (7572, ["heat_all", "heat_ref", "dir_gap", "ind_gap"]),
    "carbon24": (4062, ["energy_per_atom"]),
    "mp_crysxpp": (36737, ["formation_energy_per_atom", "material_id", "formula"]),  # about 40 s to load
    "mp_crysxpp_2k": (2000, ["formation_energy_per_atom", "material_id", "formula", "mp_crysxpp_row"]),  # embedded
}


@pytest.mark.parametrize("name", list(DOCUMENTED))
def test_real_data_set_loads_with_documented_count(name, data_home):
    n, targets = DOCUMENTED[name]
    structures, frame = load_dataset(name, data_home)
    assert len(structures) == len(frame) == n
    assert all(isinstance(s, Structure) for s in structures)
    assert set(targets) <= set(frame.columns)
    assert "structure" not in frame.columns


def test_matbench_rows_match_the_matbench_api(phonons):
    from matbench.bench import MatbenchBenchmark

    structures, frame = phonons
    benchmark = MatbenchBenchmark(subset=["matbench_phonons"], autoload=False)
    benchmark.load()
    task = benchmark.matbench_phonons
    assert frame.index.tolist() == task.df.index.tolist()
    assert frame.index[0] == "mb-phonons-0001"
    pd.testing.assert_series_equal(frame["last phdos peak"], task.df["last phdos peak"])
    assert structures[10] == task.df["structure"].iloc[10]


def test_list_datasets_says_what_is_available(data_home, tmp_path):
    table = list_datasets(data_home)
    assert set(table.index) == set(DOCUMENTED)
    assert table["available"].eq(True).all()
    assert table.loc["mp_cs419", "n_structures"] == 3202
    empty = list_datasets(tmp_path)
    assert empty.loc["mp_cs419", "available"] is False
    assert empty.loc["flla", "available"] == "download"


def test_embedded_set_loads_without_any_data_folder(monkeypatch, tmp_path):
    """mp_crysxpp_2k comes from the package: no variable, no folder, and a data_home without it is ignored."""
    monkeypatch.delenv("DIM_SKLEARN_DATA", raising=False)
    monkeypatch.delenv("MATMINER_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    table = list_datasets()
    assert table.loc["mp_crysxpp_2k", "source"] == "embedded"
    assert table.loc["mp_crysxpp_2k", "available"] is True
    assert table.loc["mp_cs419", "available"] is False

    structures, frame = load_dataset("mp_crysxpp_2k")
    assert len(structures) == len(frame) == 2000
    assert all(isinstance(s, Structure) and s.is_ordered for s in structures)
    assert frame["material_id"].str.startswith("mp-").all()
    assert frame["formation_energy_per_atom"].between(-6, 6).all()
    # every row comes from the 20% test split of mp_crysxpp that the study and the demo hold out
    rows = frame["mp_crysxpp_row"].to_numpy()
    test = train_test_split(np.arange(36737), test_size=0.2, random_state=0)[1]
    assert np.isin(rows, test).all() and (np.diff(rows) > 0).all()

    again, _ = load_dataset("mp_crysxpp_2k", data_home=tmp_path)
    assert again[0] == structures[0]


def test_embedded_set_is_the_documented_draw_from_mp_crysxpp(data_home, tmp_path):
    """scripts/make_embedded_set.py rebuilds the shipped file byte for byte from the shared data."""
    script = runpy.run_path(str(REPO / "scripts" / "make_embedded_set.py"))
    script["build"](data_home, tmp_path / "mp_crysxpp_2k.json.gz")
    shipped = REPO / "dim_sklearn" / "data" / "mp_crysxpp_2k.json.gz"
    assert (tmp_path / "mp_crysxpp_2k.json.gz").read_bytes() == shipped.read_bytes()
    assert shipped.stat().st_size < 1_000_000


def test_missing_file_names_the_file_and_the_variable(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"mp_cs419\.json\.gz not found in .*DIM_SKLEARN_DATA"):
        load_dataset("mp_cs419", tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"flla\.json\.gz not found in .*MATMINER_DATA"):
        load_dataset("flla", tmp_path, download_if_missing=False)
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        load_dataset("nope")


def test_data_home_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("MATMINER_DATA", str(tmp_path / "m"))
    monkeypatch.delenv("DIM_SKLEARN_DATA", raising=False)
    assert get_data_home() == tmp_path / "m"
    monkeypatch.setenv("DIM_SKLEARN_DATA", str(tmp_path / "d"))
    assert get_data_home() == tmp_path / "d"
    assert get_data_home(tmp_path / "a") == tmp_path / "a"
    monkeypatch.delenv("DIM_SKLEARN_DATA")
    monkeypatch.delenv("MATMINER_DATA")
    assert get_data_home() is None
    with pytest.raises(DatasetNotFoundError, match="no data folder set"):
        load_dataset("carbon24")
