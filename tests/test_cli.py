import numpy as np
import pandas as pd
import pytest
from matminer.utils.io import store_dataframe_as_json

from dim_sklearn import DeepInfoMaxFeaturizer, load_dataset
from dim_sklearn.cli import main


def test_datasets_command_lists_every_set(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "mp_cs419" in out and "matbench_phonons" in out and "available" in out


def test_pointsets_command_summarises_a_real_set(capsys, tmp_path, data_home):
    assert main(["pointsets", "matbench_phonons", "--limit", "40", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "matbench_phonons: 40 structures" in out
    assert "40 built, 0 failed" in out
    assert "supercell sites" in out and "Electronegativity" in out
    assert list(tmp_path.rglob("*.bin"))


def test_the_experiments_are_not_commands_of_the_library():
    for command in ("demo", "study"):
        with pytest.raises(SystemExit) as exit_info:
            main([command])
        assert exit_info.value.code == 2


def test_pretrain_command_saves_a_loadable_featurizer(capsys, tmp_path, data_home):
    from dim_sklearn import DeepInfoMaxFeaturizer, load_dataset

    assert main(["pretrain", "matbench_phonons", str(tmp_path / "model"), "--max-epochs", "1"]) == 0
    assert "saved to" in capsys.readouterr().out
    structures, _ = load_dataset("matbench_phonons")
    assert DeepInfoMaxFeaturizer.load(tmp_path / "model").transform(structures[:3]).shape == (3, 64)


@pytest.fixture(scope="module")
def crystals():
    """Six real structures of the embedded set and their material ids."""
    structures, frame = load_dataset("mp_crysxpp_2k")
    return structures[:6], frame["material_id"].tolist()[:6]


@pytest.fixture(scope="module")
def encoder_dir(crystals, tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder")
    DeepInfoMaxFeaturizer(max_epochs=0, random_state=0).fit(crystals[0][:3]).save(folder)
    return folder


def test_featurize_writes_one_row_per_input_in_order(crystals, encoder_dir, tmp_path, capsys):
    structures, ids = crystals
    folder = tmp_path / "cifs"
    folder.mkdir()
    for structure, mp_id in zip(structures[:3], ids[:3]):
        structure.to(filename=str(folder / f"{mp_id}.cif"))
    (folder / "garbage.cif").write_text("this is not a crystal\n")
    (folder / "empty.cif").write_text("")
    disordered = structures[0].copy()
    disordered.replace_species({disordered.species[0]: {disordered.species[0]: 0.5}})
    disordered.to(filename=str(folder / "disordered.cif"))
    (folder / "notes.txt").write_text("not a CIF: skipped by the folder's *.cif pattern")
    single = tmp_path / "single.cif"
    structures[3].to(filename=str(single))
    table = pd.DataFrame({"material_id": ids[4:6], "structure": structures[4:6]}, index=[7, 9])
    store_dataframe_as_json(table, str(tmp_path / "more.json.gz"), compression="gz", pbar=False)

    inputs = [str(folder), str(single), str(tmp_path / "more.json.gz")]

    def featurize(out, *options):
        return main(
            ["featurize", *inputs, "-o", str(out), "--encoder", str(encoder_dir), "--chunk-size", "2", *options]
        )

    out = tmp_path / "features.csv"
    assert featurize(out) == 0
    assert "wrote 9 rows" in capsys.readouterr().err

    frame = pd.read_csv(out, dtype={"id": str})
    labels = DeepInfoMaxFeaturizer.load(encoder_dir).feature_labels()
    assert frame.columns.tolist() == ["id", *labels, "reason"]
    in_folder = sorted([*ids[:3], "garbage", "empty", "disordered"])
    assert frame["id"].tolist() == [*in_folder, "single", *ids[4:6]]
    reasons = frame.set_index("id")["reason"].fillna("")
    features = frame.set_index("id")[labels]
    good = [*ids[:3], "single", *ids[4:6]]
    assert (reasons[good] == "").all()
    assert np.isfinite(features.loc[good].to_numpy()).all()
    expected = DeepInfoMaxFeaturizer.load(encoder_dir).transform(structures)
    np.testing.assert_allclose(features.loc[good].to_numpy(), expected, atol=1e-4)  # the CIFs' rounding only
    for bad, why in [("garbage", "unreadable CIF"), ("empty", "unreadable CIF"), ("disordered", "disordered")]:
        assert why in reasons[bad]
        assert features.loc[bad].isna().all()
    parallel = tmp_path / "parallel.csv"  # point sets built in 2 processes: the same file
    assert featurize(parallel, "--n-jobs", "2") == 0
    pd.testing.assert_frame_equal(pd.read_csv(parallel, dtype={"id": str}), frame)


def test_featurize_without_an_encoder_uses_the_shipped_one(crystals, monkeypatch, tmp_path):
    monkeypatch.delenv("DIM_SKLEARN_DATA", raising=False)
    monkeypatch.delenv("MATMINER_DATA", raising=False)
    structures, _ = crystals
    structures[0].to(filename=str(tmp_path / "a.cif"))
    assert main(["featurize", str(tmp_path / "a.cif"), "-o", str(tmp_path / "f.csv")]) == 0
    row = pd.read_csv(tmp_path / "f.csv", keep_default_na=False).iloc[0]
    shipped = DeepInfoMaxFeaturizer.from_pretrained()
    assert row["id"] == "a" and row["reason"] == ""
    np.testing.assert_allclose(
        row[shipped.feature_labels()].to_numpy(float), shipped.transform(structures[:1])[0], atol=1e-4
    )


def test_featurize_rejects_a_missing_path(encoder_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["featurize", str(tmp_path / "nope.cif"), "-o", str(tmp_path / "f.csv"), "--encoder", str(encoder_dir)])
    assert exit_info.value.code == 2
    assert "nope.cif: no such file or folder" in capsys.readouterr().err
