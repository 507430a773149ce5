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
