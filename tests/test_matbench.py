"""The Matbench runner in quick mode: the official API, the submission folder, resuming."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRED_INFO = ("authors", "algorithm", "algorithm_long", "bibtex_refs", "notes", "requirements")


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("run_matbench", REPO / "matbench_submission" / "run_matbench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_a_submission_matbench_accepts(runner, tmp_path, capsys, data_home):
    from matbench.bench import MatbenchBenchmark

    runner.run(["matbench_phonons"], tmp_path, quick=True, cache_dir=str(tmp_path / "cache"))
    folder = tmp_path / f"matbench_v0.1_{runner.ALGORITHM}"
    assert {p.name for p in folder.iterdir()} == {"info.json", "results.json.gz", "run_matbench.py"}
    assert (tmp_path / f"{folder.name}.progress.json").is_file()  # incomplete: kept for resuming
    info = json.loads((folder / "info.json").read_text())
    for key in REQUIRED_INFO:
        assert info.get(key) is not None, key
    assert "QUICK" in info["notes"] and "training structures" in info["notes"]

    # matbench reads back only complete benchmarks; the quick run records fold 0, so check its entry as written
    # (matbench 0.6 writes plain JSON) against the task's own fold
    written = json.loads((folder / "results.json.gz").read_text())
    result = written["tasks"]["matbench_phonons"]["results"]["fold_0"]
    task = MatbenchBenchmark(subset=["matbench_phonons"]).tasks_map["matbench_phonons"]
    task.load()
    assert sorted(result["data"]) == sorted(task.get_test_data(0, include_target=False).index)
    assert np.isfinite(list(result["data"].values())).all()
    assert np.isfinite(result["scores"]["mae"])
    assert result["parameters"]["model"] in ("rf_dim", "finetuned", "average")
    assert set(result["parameters"]["validation_mae"]) == {"rf_dim", "finetuned", "average"}
    assert all(not written["tasks"]["matbench_phonons"]["results"][f"fold_{k}"]["data"] for k in range(1, 5))
    out = capsys.readouterr().out
    assert "matbench_phonons fold 0: MAE" in out and "MEGNet" in out

    # a second run resumes: the finished fold is kept, not recomputed
    runner.run(["matbench_phonons"], tmp_path, quick=True)
    assert "fold 0: already recorded, kept" in capsys.readouterr().out
    assert json.loads((folder / "results.json.gz").read_text())["tasks"]["matbench_phonons"]["results"]["fold_0"] == result


def test_committed_phonons_submission_is_valid(runner):
    """The full 5-fold run in the repository passes matbench's own checks."""
    from matbench.bench import MatbenchBenchmark

    folder = REPO / "matbench_submission" / "benchmarks" / f"matbench_v0.1_{runner.ALGORITHM}"
    info = json.loads((folder / "info.json").read_text())
    for key in REQUIRED_INFO:
        assert info.get(key) is not None, key
    assert "QUICK" not in info["notes"]
    benchmark = MatbenchBenchmark.from_file(str(folder / "results.json.gz"))
    assert benchmark.is_valid
    task = benchmark.tasks_map["matbench_phonons"]
    assert task.all_folds_recorded
    assert not (folder.parent / f"{folder.name}.progress.json").exists()
    for fold in task.folds:
        assert task.results[f"fold_{fold}"]["parameters"]["pretraining"]["structures"].startswith("this fold's training")
