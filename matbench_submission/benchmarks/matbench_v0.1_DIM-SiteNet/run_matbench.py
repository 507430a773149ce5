"""Run Matbench structure regression tasks with dim-sklearn and write a leaderboard submission folder.

Per task and fold (Matbench v0.1's official folds, through ``MatbenchBenchmark``):

1. Deep InfoMax pretrains a Site-Net encoder on that fold's training structures only: no test
   structures, no labels (held-out DIM loss for stopping).
2. The fold's training data are split 90/10 (inner train / validation). On the inner-train part two
   downstream models are fitted: a RandomForest on the DIM features, and ``SiteNetRegressor``
   fine-tuned from the DIM encoder. The validation MAE of each, and of their average, chooses the
   model; the choice, the validation MAEs and the hyperparameters go into the fold's ``params``.
3. The chosen model (trained on the inner-train part) predicts the fold's test structures, and the
   predictions are recorded with ``MatbenchTask.record``.

Every finished fold is kept in a progress file, so a killed run continues from the folds already
done. Offline, matbench reads its data from the folder named by ``MATMINER_DATA``.

    python matbench_submission/run_matbench.py --tasks matbench_phonons [more tasks] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import train_test_split

from dim_sklearn import DeepInfoMaxFeaturizer, SiteNetRegressor

ALGORITHM = "DIM-SiteNet"
HERE = Path(__file__).resolve().parent
LEADERBOARD = {  # mean MAE over the 5 folds (docs/method.md, section 6: the Matbench leaderboard, cm^-1)
    "matbench_phonons": {"MEGNet": 28.76, "ALIGNN": 29.54, "coGN": 29.71, "MODNet": 34.28,
                         "RF-SCM/Magpie": 67.6, "Dummy": 324.0},
    "matbench_mp_gap": {"coGN": 0.156},
    "matbench_mp_e_form": {"coGN": 0.0170},
}


def settings(quick: bool) -> dict:
    """Budgets of one fold; ``quick`` is for the CI check (one fold, tiny budgets)."""
    if quick:
        return {"folds": [0], "train_limit": 120, "pretrain_epochs": 2, "finetune_epochs": 3, "n_estimators": 50}
    return {"folds": None, "train_limit": None, "pretrain_epochs": 40, "finetune_epochs": 150, "n_estimators": 500}


def run_fold(task, fold: int, budget: dict, cache_dir: str | None, verbose: bool) -> tuple[np.ndarray, dict]:
    """Pretrain, choose and predict one fold; returns the test predictions and the fold's params."""
    start = time.perf_counter()
    X_train, y_train = task.get_train_and_val_data(fold)
    X_test = task.get_test_data(fold, include_target=False)
    X_train, y_train = list(X_train)[: budget["train_limit"]], np.asarray(y_train, dtype=float)[: budget["train_limit"]]
    X_test = list(X_test)

    featurizer = DeepInfoMaxFeaturizer(
        max_epochs=budget["pretrain_epochs"], patience=10, random_state=fold, cache_dir=cache_dir, verbose=verbose
    ).fit(X_train)  # training structures of this fold only; no labels
    pretrain_s = time.perf_counter() - start

    inner, valid = train_test_split(np.arange(len(X_train)), test_size=0.1, random_state=fold)
    X_inner, X_valid = [X_train[i] for i in inner], [X_train[i] for i in valid]
    features = {"inner": featurizer.transform(X_inner), "valid": featurizer.transform(X_valid),
                "test": featurizer.transform(X_test)}
    forest = RandomForestRegressor(n_estimators=budget["n_estimators"], random_state=fold, n_jobs=-1)
    forest.fit(features["inner"], y_train[inner])
    regressor = SiteNetRegressor(
        encoder=featurizer, max_epochs=budget["finetune_epochs"], random_state=fold, cache_dir=cache_dir
    ).fit(X_inner, y_train[inner])

    valid_predictions = {"rf_dim": forest.predict(features["valid"]), "finetuned": regressor.predict(X_valid)}
    valid_predictions["average"] = (valid_predictions["rf_dim"] + valid_predictions["finetuned"]) / 2
    valid_mae = {name: float(np.abs(p - y_train[valid]).mean()) for name, p in valid_predictions.items()}
    choice = min(valid_mae, key=valid_mae.get)
    test_predictions = {"rf_dim": lambda: forest.predict(features["test"]),
                        "finetuned": lambda: regressor.predict(X_test)}
    if choice == "average":
        predictions = (test_predictions["rf_dim"]() + test_predictions["finetuned"]()) / 2
    else:
        predictions = test_predictions[choice]()

    params = {
        "model": choice,
        "validation_mae": valid_mae,
        "n_train": len(X_train), "n_inner_train": len(inner), "n_validation": len(valid),
        "pretraining": {"epochs_run": len(featurizer.history_), "best_epoch": featurizer.best_epoch_,
                        "max_epochs": budget["pretrain_epochs"], "patience": 10, "batch_sites": featurizer.batch_sites,
                        "lr": featurizer.lr, "structures": "this fold's training structures only, no labels",
                        "seconds": round(pretrain_s, 1)},
        "random_forest": {"n_estimators": budget["n_estimators"], "features": "DIM mu_g (64)"},
        "finetuning": {"epochs_run": len(regressor.history), "max_epochs": budget["finetune_epochs"],
                       "lr": regressor.lr, "batch_sites": regressor.batch_sites, "patience": regressor.patience},
        "seconds": round(time.perf_counter() - start, 1),
    }
    return np.asarray(predictions, dtype=float), params


def info(tasks: list[str], budget: dict, quick: bool, fold_seconds: list[float]) -> dict:
    """The submission's info.json."""
    import matbench
    import matminer
    import pymatgen.core
    import sklearn
    import skorch
    import torch

    import dim_sklearn
    from dim_sklearn.featurizer import _DIM_BIBTEX, _DIM_MATERIALS_BIBTEX, _SITE_NET_BIBTEX

    return {
        "authors": "dim-sklearn developers",
        "algorithm": ALGORITHM,
        "algorithm_long": (
            "Site-Net encoder pretrained per fold with Deep InfoMax (local + global Jensen-Shannon objectives with "
            "domain-aware negatives) on that fold's training structures only; downstream model chosen on a 10% "
            "validation split of the fold's training data among a RandomForest on the 64-d DIM features, "
            "SiteNetRegressor fine-tuned from the DIM encoder, and their average."
        ),
        "bibtex_refs": "\n\n".join([_SITE_NET_BIBTEX, _DIM_MATERIALS_BIBTEX, _DIM_BIBTEX]),
        "notes": (
            f"{'QUICK CHECK RUN (one fold, tiny budgets), not a leaderboard result. ' if quick else ''}"
            f"Compute: {os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.get_num_threads()} threads, "
            "no GPU. Pretraining uses each fold's training structures only (never test structures, never labels); "
            f"the model choice uses a validation split inside each fold's training data. Budgets: DIM {budget['pretrain_epochs']} epochs max (patience 10), fine-tuning "
            f"{budget['finetune_epochs']} epochs max (early stopping, patience 30), RF {budget['n_estimators']} trees. "
            f"Wall time per fold {min(fold_seconds):.0f}-{max(fold_seconds):.0f} s ({sum(fold_seconds) / 60:.0f} min "
            f"in all). Tasks: {', '.join(tasks)}."
        ),
        "requirements": {
            "python": [
                f"dim-sklearn=={dim_sklearn.__version__}", f"torch=={torch.__version__.split('+')[0]}",
                f"scikit-learn=={sklearn.__version__}", f"skorch=={skorch.__version__}",
                f"pymatgen=={pymatgen.core.__version__}", f"matminer=={matminer.__version__}",
                f"matbench=={matbench.__version__}", f"numpy=={np.__version__}",
            ]
        },
    }


def run(tasks: list[str], output_dir: Path, quick: bool = False, cache_dir: str | None = None, verbose: bool = False):
    """Run ``tasks`` and write the submission folder; returns the ``MatbenchBenchmark``.

    Every finished fold is also kept in ``<output_dir>/matbench_v0.1_<algorithm>.progress.json`` (matbench
    cannot read back a partly recorded benchmark); a later run re-records those folds instead of recomputing
    them, and the file is removed once every fold of every task is recorded and matbench finds the results valid.
    """
    from matbench.bench import MatbenchBenchmark

    warnings.filterwarnings("ignore")
    budget = settings(quick)
    folder = output_dir / f"matbench_v0.1_{ALGORITHM}"
    folder.mkdir(parents=True, exist_ok=True)
    progress_path = output_dir / f"{folder.name}.progress.json"
    progress = json.loads(progress_path.read_text()) if progress_path.is_file() else {}
    benchmark = MatbenchBenchmark(subset=tasks)
    for task in benchmark.tasks:
        task.load()
        if task.metadata.input_type != "structure" or task.metadata.task_type != "regression":
            raise ValueError(f"{task.dataset_name}: only structure regression tasks are supported")
        done = progress.setdefault(task.dataset_name, {})
        for fold in budget["folds"] if budget["folds"] is not None else task.folds:
            if str(fold) in done:
                predictions, params = np.asarray(done[str(fold)]["predictions"]), done[str(fold)]["params"]
                print(f"{task.dataset_name} fold {fold}: already recorded, kept")
            else:
                predictions, params = run_fold(task, fold, budget, cache_dir, verbose)
                done[str(fold)] = {"predictions": predictions.tolist(), "params": params}
                tmp = progress_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(progress))
                tmp.replace(progress_path)
            task.record(fold, predictions, params=params)
            truth = np.asarray(task.get_test_data(fold, include_target=True)[1], dtype=float)
            print(f"{task.dataset_name} fold {fold}: MAE {np.abs(predictions - truth).mean():.4f} "
                  f"({params['model']}; validation MAE {params['validation_mae']}; {params['seconds']:.0f} s)",
                  flush=True)
        report(task)
    benchmark.to_file(str(folder / "results.json.gz"))
    fold_seconds = [fold["params"]["seconds"] for name in tasks for fold in progress[name].values()]
    (folder / "info.json").write_text(json.dumps(info(tasks, budget, quick, fold_seconds), indent=2) + "\n")
    shutil.copy(__file__, folder / Path(__file__).name)
    if all(task.all_folds_recorded for task in benchmark.tasks) and benchmark.is_valid:
        progress_path.unlink(missing_ok=True)
    return benchmark


def report(task) -> None:
    """Per-fold MAE, mean +- std, and the leaderboard beside it."""
    maes = [task.results[f"fold_{fold}"]["scores"]["mae"] for fold in task.folds if task.is_recorded[fold]]
    print(f"{task.dataset_name}: fold MAEs " + ", ".join(f"{m:.4f}" for m in maes))
    if not maes:
        return
    mean = float(np.mean(maes))
    print(f"{task.dataset_name}: {ALGORITHM} mean MAE {mean:.4f} +- {np.std(maes):.4f} over {len(maes)} fold(s)")
    board = {**LEADERBOARD.get(task.dataset_name, {}), ALGORITHM: mean}
    for rank, (name, value) in enumerate(sorted(board.items(), key=lambda item: item[1]), start=1):
        print(f"  {rank}. {name:16s} {value:.4f}" + ("   <- this run" if name == ALGORITHM else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["matbench_phonons"])
    parser.add_argument("--quick", action="store_true", help="one fold, tiny budgets (a check, not a result)")
    parser.add_argument("--output-dir", type=Path, default=HERE / "benchmarks")
    parser.add_argument("--cache-dir", default=None, help="point-set cache folder")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    run(args.tasks, args.output_dir, quick=args.quick, cache_dir=args.cache_dir, verbose=args.verbose)


if __name__ == "__main__":
    main()
