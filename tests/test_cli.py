import argparse
from importlib.metadata import version

import numpy as np
import pandas as pd
import pytest
from matminer.utils.io import store_dataframe_as_json

import dim_sklearn
from dim_sklearn import DeepInfoMaxFeaturizer, PretrainedEncoder, load_dataset
from dim_sklearn.cli import build_parser, main


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


def _actions(parser):
    """(parser, action) for every argument of ``parser`` and of its subcommands, help flags aside."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        elif not isinstance(action, argparse._HelpAction):
            yield parser.prog, action


def test_every_option_of_every_command_has_help():
    parser, commands = build_parser()
    actions = list(_actions(parser))
    assert {prog for prog, _ in actions} == {"dim-sklearn", *(f"dim-sklearn {name}" for name in commands)}
    assert len(actions) > 20
    missing = [f"{prog} {action.dest}" for prog, action in actions if not (action.help or "").strip()]
    assert not missing


def test_help_is_plain_text_and_names_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":class:" not in out and ":func:" not in out
    for command in ("datasets", "featurize", "pointsets", "pretrain"):
        assert f"dim-sklearn {command}" in out


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"dim-sklearn {version('dim-sklearn')}"
    assert dim_sklearn.__version__ == version("dim-sklearn")


def test_pretrain_on_a_folder_of_cifs_lists_what_it_skipped_and_featurize_reads_the_encoder(tmp_path, capsys):
    structures, ids = load_dataset("mp_crysxpp_2k")[0][:8], [f"c{k}" for k in range(8)]
    folder = tmp_path / "cifs"
    folder.mkdir()
    for structure, name in zip(structures, ids):
        structure.to(filename=str(folder / f"{name}.cif"))
    (folder / "garbage.cif").write_text("this is not a crystal\n")
    disordered = structures[0].copy()
    disordered.replace_species({disordered.species[0]: {disordered.species[0]: 0.5}})
    disordered.to(filename=str(folder / "disordered.cif"))
    out = tmp_path / "encoder"

    assert main(["pretrain", str(folder), str(out), "--max-epochs", "2", "--random-state", "3"]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 of 10 structures" in captured.err
    assert f"{folder / 'garbage.cif'}: unreadable CIF" in captured.err
    assert f"{folder / 'disordered.cif'}: disordered structure" in captured.err
    assert "pretrained on 8 structures" in captured.out

    featurizer = DeepInfoMaxFeaturizer.load(out)
    assert len(featurizer.history_) == 2 and featurizer.random_state == 3
    assert featurizer.metadata_["corpus"] == {"inputs": [str(folder)], "n_structures": 8, "n_skipped": 2}
    assert PretrainedEncoder.load(out).provenance["settings"]["max_epochs"] == 2
    shipped = DeepInfoMaxFeaturizer.from_pretrained().transform(structures[:2])
    assert not np.allclose(featurizer.transform(structures[:2]), shipped, atol=1e-3)

    assert main(["featurize", str(folder), "-o", str(tmp_path / "f.csv"), "--encoder", str(out)]) == 0
    frame = pd.read_csv(tmp_path / "f.csv", dtype={"id": str}).set_index("id")
    np.testing.assert_allclose(
        frame.loc[ids, featurizer.feature_labels()].to_numpy(), featurizer.transform(structures), atol=1e-4
    )
    assert frame.loc[["garbage", "disordered"], featurizer.feature_labels()].isna().all(axis=None)


def test_pretrain_takes_structure_files_and_data_sets_together(tmp_path, capsys):
    structures, frame = load_dataset("mp_crysxpp_2k")
    table = pd.DataFrame({"material_id": frame["material_id"][:3], "structure": structures[:3]})
    store_dataframe_as_json(table, str(tmp_path / "three.json.gz"), compression="gz", pbar=False)
    inputs = [str(tmp_path / "three.json.gz"), "mp_crysxpp_2k"]
    assert main(["pretrain", *inputs, str(tmp_path / "enc"), "--limit", "7", "--max-epochs", "1"]) == 0
    assert "pretrained on 7 structures" in capsys.readouterr().out
    assert DeepInfoMaxFeaturizer.load(tmp_path / "enc").metadata_["corpus"]["inputs"] == inputs


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["nowhere"], "nowhere: no such file or folder, and no data set of that name"),
        (["notes.txt"], "notes.txt: not a .cif"),
        (["few"], "needs at least 4 structures, got 3 (1 of 4 structures skipped, first: "),
    ],
)
def test_pretrain_refuses_unusable_inputs_with_a_usage_error(inputs, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a structure")
    (tmp_path / "few").mkdir()
    for k, structure in enumerate(load_dataset("mp_crysxpp_2k")[0][:3]):
        structure.to(filename=str(tmp_path / "few" / f"{k}.cif"))
    (tmp_path / "few" / "bad.cif").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", *inputs, "out", "--max-epochs", "1"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
