from dim_sklearn.cli import main


def test_datasets_command_lists_every_set(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "mp_cs419" in out and "matbench_phonons" in out and "available" in out


def test_featurize_command_summarises_a_real_set(capsys, tmp_path):
    assert main(["featurize", "matbench_phonons", "--limit", "40", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "matbench_phonons: 40 structures" in out
    assert "40 built, 0 failed" in out
    assert "supercell sites" in out and "Electronegativity" in out
    assert list(tmp_path.rglob("*.bin"))


def test_demo_prints_the_comparison_table(capsys, tmp_path):
    assert main(["demo", "--max-epochs", "1", "--repeats", "1", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "RandomForest test MAE on mp_cs419 formation_energy_per_atom (641 test structures)" in out
    assert "DIM pretrained on the 2561 training structures for 1 epochs" in out
    lines = [line.split() for line in out.splitlines() if line.strip().split(" ")[0] in ("50", "100", "250", "1000")]
    assert [row[0] for row in lines] == ["50", "100", "250", "1000"]
    assert all(0 < float(row[1]) < 2 and 0 < float(row[4]) < 2 for row in lines)


def test_pretrain_command_saves_a_loadable_featurizer(capsys, tmp_path):
    from dim_sklearn import DeepInfoMaxFeaturizer, load_dataset

    assert main(["pretrain", "matbench_phonons", str(tmp_path / "model"), "--max-epochs", "1"]) == 0
    assert "saved to" in capsys.readouterr().out
    structures, _ = load_dataset("matbench_phonons")
    assert DeepInfoMaxFeaturizer.load(tmp_path / "model").transform(structures[:3]).shape == (3, 64)
