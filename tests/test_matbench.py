"""The Matbench runner in quick mode: the official API, the submission folder, resuming."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRED_INFO = ("authors", "algorithm", "algorithm_long", "bibtex_refs", "notes", "requirements")


def _script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner():
    return _script(REPO / "matbench_submission" / "run_matbench.py")


def _corpus_encoder(folder: Path, structures: list, excluded: list[str]) -> Path:
    """A small encoder saved with the metadata ``scripts/pretrain_shipped.py`` writes, its corpus excluding
    ``excluded``."""
    from dim_sklearn import DeepInfoMaxFeaturizer

    describe = _script(REPO / "scripts" / "pretrain_shipped.py").describe
    featurizer = DeepInfoMaxFeaturizer(max_epochs=2, random_state=0).fit(structures)
    corpus = {
        "file": "hand_built.csv.gz",
        "n_structures": len(structures),
        "sha256": "0" * 64,
        "sets": {"hand_built": len(structures)},
        "held_out": "nothing: hand-built crystals",
        "excluded_sets": excluded,
    }
    featurizer.save(folder, metadata=describe(featurizer, corpus, len(structures)))
    return folder


def test_an_encoder_that_may_have_seen_the_task_is_refused(runner, tmp_path, hand_built):
    """Only an encoder whose corpus record excludes the task may serve its folds: not the shipped one (its corpus
    holds phonons structures), not one that excluded another set."""
    from dim_sklearn.encoder import pretrained_path

    for path in (pretrained_path(), _corpus_encoder(tmp_path / "other", hand_built, ["perov5"])):
        with pytest.raises(ValueError, match="excluded sets"):
            runner.corpus_encoder(path, "matbench_phonons", None)
    kept = runner.corpus_encoder(
        _corpus_encoder(tmp_path / "ok", hand_built, ["matbench_phonons"]), "matbench_phonons", None
    )
    assert kept.metadata_["corpus"]["excluded_sets"] == ["matbench_phonons"]


def test_quick_run_with_a_corpus_encoder_adds_magpie_candidates(runner, tmp_path, capsys, data_home, hand_built):
    encoder = _corpus_encoder(tmp_path / "encoder", hand_built, ["matbench_phonons"])
    runner.run(["matbench_phonons"], tmp_path, quick=True, cache_dir=str(tmp_path / "cache"), encoder=encoder)
    folder = tmp_path / f"matbench_v0.1_{runner.CORPUS_ALGORITHM}"
    assert {p.name for p in folder.iterdir()} == {"info.json", "results.json.gz", "run_matbench.py"}
    info = json.loads((folder / "info.json").read_text())
    assert info["algorithm"] == runner.CORPUS_ALGORITHM and "Magpie" in info["algorithm_long"]
    assert f"Deep InfoMax on a corpus of {len(hand_built)} structures" in info["notes"] and "QUICK" in info["notes"]
    result = json.loads((folder / "results.json.gz").read_text())["tasks"]["matbench_phonons"]["results"]["fold_0"]
    params = result["parameters"]
    candidates = {"rf_dim", "rf_magpie", "rf_magpie_dim", "finetuned", "average"}
    assert set(params["validation_mae"]) == candidates and params["model"] in candidates
    assert params["average_of"][0] == "finetuned" and params["average_of"][1].startswith("rf_")
    assert params["pretraining"]["encoder"] == "encoder" and params["pretraining"]["epochs_run"] == 2
    assert np.isfinite(list(result["data"].values())).all()
    assert f"{runner.CORPUS_ALGORITHM} mean MAE" in capsys.readouterr().out


def test_quick_run_with_the_ensemble_recipe(runner, tmp_path, capsys, data_home, hand_built):
    with pytest.raises(ValueError, match="give --encoder"):
        runner.algorithm(None, "ensemble")
    encoder = _corpus_encoder(tmp_path / "encoder", hand_built, ["matbench_phonons"])
    runner.run(["matbench_phonons"], tmp_path, quick=True, encoder=encoder, recipe="ensemble")
    folder = tmp_path / f"matbench_v0.1_{runner.ENSEMBLE_ALGORITHM}"
    info = json.loads((folder / "info.json").read_text())
    assert info["algorithm"] == runner.ENSEMBLE_ALGORITHM and "SiteNetEnsemble" in info["algorithm_long"]
    assert "chosen out of fold" in info["notes"]
    result = json.loads((folder / "results.json.gz").read_text())["tasks"]["matbench_phonons"]["results"]["fold_0"]
    params = result["parameters"]
    assert params["model"] == "SiteNetEnsemble" and set(params["validation_mae"]) == {
        "networks",
        "forest",
        "best_blend",
        "blend",
    }
    assert len(params["finetuning"]["epochs_run"]) == 5 and 0 <= params["networks_share"] <= 1
    assert np.isfinite(list(result["data"].values())).all()
    assert f"{runner.ENSEMBLE_ALGORITHM} mean MAE" in capsys.readouterr().out


def test_quick_run_with_the_cosine_ensemble_recipe(runner, tmp_path, data_home, hand_built):
    encoder = _corpus_encoder(tmp_path / "encoder", hand_built, ["matbench_phonons"])
    assert runner.algorithm(encoder, "ensemble-cosine") == runner.COSINE_ALGORITHM
    full = runner.settings(False, True, "ensemble-cosine")
    assert (full["finetune_lr"], full["lr_schedule"], full["finetune_epochs"]) == (1e-3, "cosine", runner.COSINE_EPOCHS)
    assert runner.settings(False, True, "ensemble")["lr_schedule"] == "constant"
    runner.run(["matbench_phonons"], tmp_path, quick=True, encoder=encoder, recipe="ensemble-cosine")
    folder = tmp_path / f"matbench_v0.1_{runner.COSINE_ALGORITHM}"
    info = json.loads((folder / "info.json").read_text())
    assert info["algorithm"] == runner.COSINE_ALGORITHM and "along a cosine over 3 epochs" in info["algorithm_long"]
    assert "lr 0.001 annealed to 0 along a cosine" in info["notes"]
    result = json.loads((folder / "results.json.gz").read_text())["tasks"]["matbench_phonons"]["results"]["fold_0"]
    finetuning = result["parameters"]["finetuning"]
    assert (finetuning["lr"], finetuning["lr_schedule"], finetuning["max_epochs"]) == (1e-3, "cosine", 3)
    assert np.isfinite(list(result["data"].values())).all()


def test_quick_run_with_the_seeds_recipe(runner, tmp_path, data_home, hand_built):
    """Five networks on all of the fold's training data, no early stopping and no forest: the record says so."""
    with pytest.raises(ValueError, match="give --encoder"):
        runner.algorithm(None, "seeds")
    encoder = _corpus_encoder(tmp_path / "encoder", hand_built, ["matbench_phonons"])
    assert runner.settings(False, True, "seeds")["resampling"] == "none"
    runner.run(["matbench_phonons"], tmp_path, quick=True, encoder=encoder, recipe="seeds")
    folder = tmp_path / f"matbench_v0.1_{runner.SEEDS_ALGORITHM}"
    info = json.loads((folder / "info.json").read_text())
    assert info["algorithm"] == runner.SEEDS_ALGORITHM and "seed ensemble" in info["algorithm_long"]
    assert "no early stopping" in info["notes"] and "RF" not in info["notes"]
    result = json.loads((folder / "results.json.gz").read_text())["tasks"]["matbench_phonons"]["results"]["fold_0"]
    params = result["parameters"]
    assert params["random_forest"] is None and params["validation_mae"] == {} and params["networks_share"] == 1
    finetuning = params["finetuning"]
    assert finetuning["patience"] is None and finetuning["epochs_run"] == [3] * 5
    assert (finetuning["lr"], finetuning["lr_schedule"]) == (1e-3, "cosine")
    assert np.isfinite(list(result["data"].values())).all()


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
    assert result["parameters"]["average_of"] == ["finetuned", "rf_dim"]
    assert all(not written["tasks"]["matbench_phonons"]["results"][f"fold_{k}"]["data"] for k in range(1, 5))
    out = capsys.readouterr().out
    assert "matbench_phonons fold 0: MAE" in out and "MEGNet" in out

    # a second run resumes: the finished fold is kept, not recomputed
    runner.run(["matbench_phonons"], tmp_path, quick=True)
    assert "fold 0: already recorded, kept" in capsys.readouterr().out
    assert (
        json.loads((folder / "results.json.gz").read_text())["tasks"]["matbench_phonons"]["results"]["fold_0"] == result
    )


CORPUS = (
    "a corpus of 37595 structures without labels (held out: the 20% test split of every set, Matbench phonons "
    "fold 0, every row of matbench_phonons,"
)
SUBMISSIONS = {
    "DIM-SiteNet": "this fold's training structures only",
    "DIM-SiteNet-corpus": CORPUS,
    "DIM-SiteNet-ensemble": CORPUS,
    "DIM-SiteNet-ensemble-cosine": CORPUS,
    "DIM-SiteNet-seeds": CORPUS,
}
"""The committed submissions, and how each fold's record says its encoder was pretrained."""


@pytest.mark.parametrize("algorithm", SUBMISSIONS)
def test_committed_phonons_submission_is_valid(algorithm):
    """The full 5-fold runs in the repository pass matbench's own checks, and no fold's encoder saw test structures."""
    from matbench.bench import MatbenchBenchmark

    folder = REPO / "matbench_submission" / "benchmarks" / f"matbench_v0.1_{algorithm}"
    info = json.loads((folder / "info.json").read_text())
    for key in REQUIRED_INFO:
        assert info.get(key) is not None, key
    assert "QUICK" not in info["notes"] and info["algorithm"] == algorithm
    benchmark = MatbenchBenchmark.from_file(str(folder / "results.json.gz"))
    assert benchmark.is_valid
    task = benchmark.tasks_map["matbench_phonons"]
    assert task.all_folds_recorded
    assert not (folder.parent / f"{folder.name}.progress.json").exists()
    for fold in task.folds:
        assert task.results[f"fold_{fold}"]["parameters"]["pretraining"]["structures"].startswith(
            SUBMISSIONS[algorithm]
        )


@pytest.mark.parametrize("algorithm", SUBMISSIONS)
def test_each_submission_keeps_a_script_that_still_runs(algorithm):
    """A folder holds the script that produced its results, kept as it was; it still starts with today's package."""
    script = REPO / "matbench_submission" / "benchmarks" / f"matbench_v0.1_{algorithm}" / "run_matbench.py"
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300, cwd=script.parent
    )
    assert done.returncode == 0, done.stderr
    assert "--tasks" in done.stdout and "--quick" in done.stdout


def _fold(device: str, cpus: int, finetune_patience: int, seconds: float) -> dict:
    """The params a fold records, as run_fold writes them (the fields the notes read)."""
    return {
        "pretraining": {"max_epochs": 40, "patience": 10, "epochs_run": 37},
        "finetuning": {"max_epochs": 150, "patience": finetune_patience, "epochs_run": 90},
        "random_forest": {"n_estimators": 500},
        "compute": {"device": device, "cpus": cpus, "machine": "x86_64", "torch": "2.13.0", "torch_threads": cpus},
        "seconds": seconds,
    }


def test_notes_are_written_from_the_recorded_run(runner):
    folds = [_fold("NVIDIA H100 80GB HBM3", 16, 20, 100.0), _fold("CPU", 2, 20, 400.0)]
    notes = runner.notes(["matbench_phonons"], False, folds)
    assert "NVIDIA H100 80GB HBM3, 16 CPU cores (x86_64), torch 2.13.0 with 16 threads" in notes
    assert "CPU, 2 CPU cores (x86_64), torch 2.13.0 with 2 threads" in notes
    assert "no GPU" not in notes and "patience 30" not in notes
    assert "DIM 40 epochs max" in notes and "patience 10; 37-37 run" in notes
    assert "fine-tuning 150 epochs max (early stopping, patience 20; 90-90 run)" in notes
    assert "RF 500 trees" in notes and "100-400 s (8 min in all, 2 folds)" in notes
    assert "QUICK" not in notes and "QUICK" in runner.notes(["matbench_phonons"], True, folds[:1])


def test_a_fold_records_where_it_ran(runner):
    import torch

    recorded = runner.compute("cpu")
    assert recorded["device"] == "CPU" and recorded["torch"] == torch.__version__
    assert recorded["cpus"] >= 1 and recorded["torch_threads"] == torch.get_num_threads()


def test_info_cites_the_featurizers_references(runner):
    from dim_sklearn import DeepInfoMaxFeaturizer

    written = runner.info(["matbench_phonons"], False, [_fold("CPU", 2, 30, 60.0)])
    assert written["bibtex_refs"] == "\n\n".join(DeepInfoMaxFeaturizer().citations())
    assert written["notes"] == runner.notes(["matbench_phonons"], False, [_fold("CPU", 2, 30, 60.0)])
    for key in REQUIRED_INFO:
        assert written.get(key), key
