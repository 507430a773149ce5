"""Run Matbench structure regression tasks with dim-sklearn and write a leaderboard submission folder.

Per task and fold (Matbench v0.1's official folds, through ``MatbenchBenchmark``):

1. The encoder. By default Deep InfoMax pretrains a Site-Net encoder on that fold's training
   structures only: no test structures, no labels (held-out DIM loss for stopping); the submission
   is ``DIM-SiteNet``. With ``--encoder FOLDER``, an encoder pretrained once on a corpus that holds
   out every structure of the task (``scripts/pretraining_corpus.py --exclude-set <task>``, then
   ``scripts/pretrain_shipped.py``) serves every fold, and Magpie composition features join the
   candidates; the submission is ``DIM-SiteNet-corpus``. An encoder whose corpus record does not say
   it held the task out is refused.
2. The model. By default (``--recipe choose``) the fold's training data are split 90/10 (inner train /
   validation). On the inner-train part the candidates are fitted: RandomForests on the DIM features
   (with ``--encoder`` also on Magpie and on Magpie + DIM), and ``SiteNetRegressor`` fine-tuned from the
   encoder; one more candidate averages the fine-tuned model with the RandomForest of lowest validation
   MAE. The validation MAE chooses the model; the choice, the validation MAEs and the hyperparameters go
   into the fold's ``params``. With ``--recipe ensemble`` (and ``--encoder``) the model is
   ``SiteNetEnsemble`` on all of the fold's training data: five networks fine-tuned from the encoder on
   the folds of the labels, blended with a RandomForest on Magpie in the share chosen out of fold; the
   submission is ``DIM-SiteNet-ensemble``. ``--recipe ensemble-cosine`` is the same ensemble whose networks
   train with ``lr=1e-3, lr_schedule="cosine"`` over a shorter budget; the submission is
   ``DIM-SiteNet-ensemble-cosine``. ``--recipe seeds`` is a seed ensemble instead
   (``SiteNetEnsemble(resampling="none", composition=None)``): five networks, each on all of the fold's
   training data with its own seed, trained to the end of that cosine schedule without early stopping, and
   averaged; the submission is ``DIM-SiteNet-seeds``.
3. The model predicts the fold's test structures, and the predictions are recorded with
   ``MatbenchTask.record``.

Every finished fold is kept in a progress file, so a killed run continues from the folds already
done. Offline, matbench reads its data from the folder named by ``MATMINER_DATA``.

    python matbench_submission/run_matbench.py --tasks matbench_phonons [more tasks] [--quick]
    python matbench_submission/run_matbench.py --tasks matbench_phonons --encoder ~/.cache/dim-38k-no-phonons
    python matbench_submission/run_matbench.py --tasks matbench_phonons --encoder ~/.cache/dim-38k-no-phonons \
        --recipe ensemble
    python matbench_submission/run_matbench.py --tasks matbench_phonons --encoder ~/.cache/dim-38k-no-phonons \
        --recipe ensemble-cosine
    python matbench_submission/run_matbench.py --tasks matbench_phonons --encoder ~/.cache/dim-38k-no-phonons \
        --recipe seeds
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
import torch
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import train_test_split

from dim_sklearn import DeepInfoMaxFeaturizer, SiteNetEnsemble, SiteNetRegressor

ALGORITHM = "DIM-SiteNet"
CORPUS_ALGORITHM = "DIM-SiteNet-corpus"
ENSEMBLE_ALGORITHM = "DIM-SiteNet-ensemble"
COSINE_ALGORITHM = "DIM-SiteNet-ensemble-cosine"
SEEDS_ALGORITHM = "DIM-SiteNet-seeds"
RECIPES = ("choose", "ensemble", "ensemble-cosine", "seeds")
ENSEMBLES = {"ensemble": ENSEMBLE_ALGORITHM, "ensemble-cosine": COSINE_ALGORITHM, "seeds": SEEDS_ALGORITHM}
"""The recipes that fit a ``SiteNetEnsemble`` on a corpus encoder, and their submissions."""
COSINE_EPOCHS = 150
"""Fine-tuning epochs of the ``ensemble-cosine`` and ``seeds`` networks, over which the learning rate falls from
1e-3 to 0."""
HERE = Path(__file__).resolve().parent
LEADERBOARD = {  # mean MAE over the 5 folds (docs/method.md, section 6; the phonons board, cm^-1)
    "matbench_phonons": {
        "MEGNet": 28.76,
        "ALIGNN": 29.54,
        "coGN": 29.71,
        "MODNet": 34.28,
        "RF-SCM/Magpie": 67.6,
        "Dummy": 324.0,
    },
    "matbench_mp_gap": {"coGN": 0.156},
    "matbench_mp_e_form": {"coGN": 0.0170},
}


def algorithm(encoder: Path | None, recipe: str = "choose") -> str:
    """The submission's name: per-fold pretraining, or one encoder pretrained on a corpus (``encoder``), with the
    model chosen on a validation split or (``recipe`` one of ``ENSEMBLES``) a ``SiteNetEnsemble``."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    if recipe in ENSEMBLES:
        if encoder is None:
            raise ValueError(f"the {recipe} recipe fine-tunes a corpus encoder: give --encoder")
        return ENSEMBLES[recipe]
    return ALGORITHM if encoder is None else CORPUS_ALGORITHM


def settings(quick: bool, corpus: bool = False, recipe: str = "choose") -> dict:
    """Budgets of one fold; ``quick`` is for the CI check (one fold, tiny budgets), ``corpus`` for an encoder
    pretrained on a corpus (no per-fold pretraining, so fine-tuning gets the time: 300 epochs at most);
    ``recipe="ensemble-cosine"`` fine-tunes from lr 1e-3 down a cosine over ``COSINE_EPOCHS`` epochs, and
    ``recipe="seeds"`` the same without early stopping, every network on all the training data."""
    cosine = recipe in ("ensemble-cosine", "seeds")
    schedule = {
        "finetune_lr": 1e-3 if cosine else 1e-4,
        "lr_schedule": "cosine" if cosine else "constant",
        "resampling": "none" if recipe == "seeds" else "folds",
    }
    if quick:
        return {
            **schedule,
            "folds": [0],
            "train_limit": 120,
            "pretrain_epochs": 2,
            "pretrain_patience": 10,
            "finetune_epochs": 3,
            "n_estimators": 50,
        }
    return {
        **schedule,
        "folds": None,
        "train_limit": None,
        "pretrain_epochs": 40,
        "pretrain_patience": 10,
        "finetune_epochs": COSINE_EPOCHS if cosine else 300 if corpus else 150,
        "n_estimators": 500,
    }


def compute(device: str) -> dict:
    """Where a fold ran: ``device`` (as torch reads it) by name, the GPU's or "CPU", the cores, torch and threads."""
    where = torch.device(device)
    name = torch.cuda.get_device_name(where) if where.type == "cuda" else where.type.upper()
    return {
        "device": name,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def corpus_encoder(path: Path, task_name: str, cache_dir: str | None) -> DeepInfoMaxFeaturizer:
    """The encoder saved in ``path``, refused unless its corpus record says that it held out ``task_name``."""
    featurizer = DeepInfoMaxFeaturizer.load(path)
    corpus = featurizer.metadata_.get("corpus", {})
    if task_name not in corpus.get("excluded_sets", ()):
        raise ValueError(
            f"{path}: its pretraining corpus does not record {task_name!r} among its excluded sets, so it may have "
            f"seen the task's test structures; build a corpus with scripts/pretraining_corpus.py --exclude-set "
            f"{task_name} and pretrain on it (scripts/pretrain_shipped.py)"
        )
    return featurizer.set_params(cache_dir=cache_dir)


def magpie(structures: list) -> np.ndarray:
    """matminer's Magpie composition features (132) of ``structures``."""
    from matminer.featurizers.composition import ElementProperty

    featurizer = ElementProperty.from_preset("magpie")
    featurizer.set_n_jobs(1)
    return np.asarray(featurizer.featurize_many([s.composition for s in structures], pbar=False), dtype=float)


def _pretraining(featurizer: DeepInfoMaxFeaturizer, encoder: Path | None, seconds: float) -> dict:
    """The fold's record of its encoder: the per-fold run, or the corpus encoder's own metadata."""
    if encoder is None:
        return {
            "epochs_run": len(featurizer.history_),
            "best_epoch": featurizer.best_epoch_,
            "max_epochs": featurizer.max_epochs,
            "patience": featurizer.patience,
            "batch_sites": featurizer.batch_sites,
            "lr": featurizer.lr,
            "structures": "this fold's training structures only, no labels",
            "seconds": round(seconds, 1),
        }
    meta = featurizer.metadata_
    corpus = meta["corpus"]
    return {
        "encoder": encoder.name,
        "structures": f"a corpus of {corpus['n_structures']} structures without labels "
        f"(held out: {corpus['held_out']})",
        "corpus_sha256": corpus["sha256"],
        "epochs_run": meta["epochs"],
        "best_epoch": meta["best_epoch"],
        "max_epochs": meta["settings"]["max_epochs"],
        "batch_sites": featurizer.batch_sites,
        "lr": featurizer.lr,
        "held_out_global_dim": meta["held_out"]["best_global_dim"],
        "seconds": meta["training_seconds"],
        "machine": meta["machine"],
    }


def _finetuning(regressors: list[SiteNetRegressor], max_epochs: int) -> dict:
    """The fold's record of its fine-tuning: budget and the epochs its networks ran."""
    runs = [len(r.history) for r in regressors]
    return {
        "epochs_run": runs[0] if len(runs) == 1 else runs,
        "max_epochs": max_epochs,
        "lr": regressors[0].lr,
        "lr_schedule": regressors[0].lr_schedule,
        "batch_sites": regressors[0].batch_sites,
        "patience": regressors[0].patience,
    }


def ensemble_fold(
    X_train: list, y_train: np.ndarray, X_test: list, featurizer, budget: dict, fold: int, cache_dir: str | None
) -> tuple[np.ndarray, dict]:
    """``SiteNetEnsemble`` from the corpus encoder on the fold's training data (on the folds of the labels and
    blended with a forest, or a seed ensemble: ``budget["resampling"]``); test predictions and params."""
    network = SiteNetRegressor(
        encoder=featurizer.encoder_,
        max_epochs=budget["finetune_epochs"],
        lr=budget["finetune_lr"],
        lr_schedule=budget["lr_schedule"],
        cache_dir=cache_dir,
    )
    seeds = budget["resampling"] == "none"
    if seeds:  # the whole schedule on every label
        network.set_params(patience=None, train_split=None)
    ensemble = SiteNetEnsemble(
        regressor=network,
        resampling=budget["resampling"],
        composition=None if seeds else "magpie",
        n_estimators=budget["n_estimators"],
        random_state=fold,
    ).fit(X_train, y_train)
    params = {
        "model": "SiteNetEnsemble",
        "validation_mae": {name: round(mae, 6) for name, mae in ensemble.oof_mae_.items()},
        "validation": "none: five networks on all the training data with their own seeds, no early stopping"
        if seeds
        else f"out of fold: {ensemble.n_folds} networks, each early-stopped on its own fold of the "
        "training data; the forest out of bag",
        "networks_share": ensemble.weight_,
        "networks_share_best_out_of_fold": ensemble.best_weight_,
        "n_train": len(X_train),
        "random_forest": None if seeds else {"n_estimators": budget["n_estimators"], "features": "Magpie (132)"},
        "finetuning": _finetuning(ensemble.estimators_, budget["finetune_epochs"]),
        "compute": compute(ensemble.estimators_[0].device_),
    }
    return ensemble.predict(X_test), params


def run_fold(
    task,
    fold: int,
    budget: dict,
    cache_dir: str | None,
    verbose: bool,
    encoder: Path | None = None,
    recipe: str = "choose",
) -> tuple[np.ndarray, dict]:
    """Pretrain (or load ``encoder``), fit the ``recipe``'s model and predict one fold; returns the test
    predictions and the params."""
    start = time.perf_counter()
    X_train, y_train = task.get_train_and_val_data(fold)
    X_test = task.get_test_data(fold, include_target=False)
    X_train, y_train = list(X_train)[: budget["train_limit"]], np.asarray(y_train, dtype=float)[: budget["train_limit"]]
    X_test = list(X_test)

    if encoder is None:
        featurizer = DeepInfoMaxFeaturizer(
            max_epochs=budget["pretrain_epochs"],
            patience=budget["pretrain_patience"],
            random_state=fold,
            cache_dir=cache_dir,
            verbose=verbose,
        ).fit(X_train)  # training structures of this fold only; no labels
    else:
        featurizer = corpus_encoder(encoder, task.dataset_name, cache_dir)
    pretraining = _pretraining(featurizer, encoder, time.perf_counter() - start)
    if recipe in ENSEMBLES:
        predictions, params = ensemble_fold(X_train, y_train, X_test, featurizer, budget, fold, cache_dir)
        params = {**params, "pretraining": pretraining, "seconds": round(time.perf_counter() - start, 1)}
        return np.asarray(predictions, dtype=float), params

    inner, valid = train_test_split(np.arange(len(X_train)), test_size=0.1, random_state=fold)
    X_inner, X_valid = [X_train[i] for i in inner], [X_train[i] for i in valid]

    def tables(structures: list) -> dict[str, np.ndarray]:
        dim = featurizer.transform(structures)
        if encoder is None:
            return {"dim": dim}
        composition = magpie(structures)
        return {"dim": dim, "magpie": composition, "magpie_dim": np.hstack([composition, dim])}

    forests = {
        f"rf_{name}": RandomForestRegressor(n_estimators=budget["n_estimators"], random_state=fold, n_jobs=-1).fit(
            table, y_train[inner]
        )
        for name, table in tables(X_inner).items()
    }
    regressor = SiteNetRegressor(
        encoder=featurizer, max_epochs=budget["finetune_epochs"], random_state=fold, cache_dir=cache_dir
    ).fit(X_inner, y_train[inner])

    def predict(structures: list) -> dict[str, np.ndarray]:
        out = {f"rf_{name}": forests[f"rf_{name}"].predict(table) for name, table in tables(structures).items()}
        return {**out, "finetuned": regressor.predict(structures)}

    on_valid = predict(X_valid)
    valid_mae = {name: float(np.abs(p - y_train[valid]).mean()) for name, p in on_valid.items()}
    best_forest = min(forests, key=valid_mae.get)
    on_valid["average"] = (on_valid[best_forest] + on_valid["finetuned"]) / 2
    valid_mae["average"] = float(np.abs(on_valid["average"] - y_train[valid]).mean())
    choice = min(valid_mae, key=valid_mae.get)
    on_test = predict(X_test)
    predictions = (on_test[best_forest] + on_test["finetuned"]) / 2 if choice == "average" else on_test[choice]

    params = {
        "model": choice,
        "validation_mae": valid_mae,
        "average_of": ["finetuned", best_forest],
        "n_train": len(X_train),
        "n_inner_train": len(inner),
        "n_validation": len(valid),
        "pretraining": pretraining,
        "random_forest": {
            "n_estimators": budget["n_estimators"],
            "features": {"dim": "DIM mu_g (64)", "magpie": "Magpie (132)", "magpie_dim": "Magpie + DIM mu_g (196)"}
            if encoder is not None
            else "DIM mu_g (64)",
        },
        "finetuning": _finetuning([regressor], budget["finetune_epochs"]),
        "compute": compute(regressor.device_),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return np.asarray(predictions, dtype=float), params


def _distinct(values: list) -> str:
    """The distinct values, in order of first appearance, joined by " / "."""
    return " / ".join(str(value) for value in dict.fromkeys(values))


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def _pretraining_notes(pretraining: list[dict]) -> str:
    """How the folds' encoders were pretrained, and with which budget."""
    if "encoder" in pretraining[0]:
        first = pretraining[0]
        machine = first["machine"]
        device = "CPU" if machine["device"] == "cpu" else machine["device"]
        return (
            f"One encoder ({_distinct([p['encoder'] for p in pretraining])}) serves every fold: Deep InfoMax on "
            f"{first['structures']} (corpus sha256 {_distinct([p['corpus_sha256'] for p in pretraining])}), "
            f"{first['epochs_run']} epochs in {first['seconds'] / 60:.0f} min on {device} with "
            f"{_threads(machine['torch_threads'])}, held-out global DIM term {first['held_out_global_dim']} "
            "(chance 1.386)"
        )
    return (
        "Pretraining uses each fold's training structures only (never test structures, never labels), DIM "
        f"{_distinct([p['max_epochs'] for p in pretraining])} epochs max (early stopping on the held-out DIM loss, "
        f"patience {_distinct([p['patience'] for p in pretraining])}; "
        f"{min(p['epochs_run'] for p in pretraining)}-{max(p['epochs_run'] for p in pretraining)} run)"
    )


def _schedule(finetuning: list[dict]) -> str:
    """ ", lr 1e-3 annealed to 0 along a cosine" where the folds' networks used that schedule; else nothing."""
    if finetuning[0].get("lr_schedule") != "cosine":
        return ""
    rates = _distinct([format(f["lr"], "g") for f in finetuning])
    return f", lr {rates} annealed to 0 along a cosine"


def _seed_ensemble(fold: dict) -> bool:
    """Whether a fold's ``params`` record a seed ensemble (``SiteNetEnsemble`` without a forest)."""
    return fold.get("model") == "SiteNetEnsemble" and fold.get("random_forest", {}) is None


def notes(tasks: list[str], quick: bool, folds: list[dict]) -> str:
    """The submission's notes, from the ``params`` recorded for every fold: compute, budgets, wall time."""
    machines = [fold.get("compute") for fold in folds]
    hardware = _distinct(
        [
            f"{c['device']}, {c['cpus']} CPU cores ({c['machine']}), torch {c['torch']} with "
            f"{_threads(c['torch_threads'])}"
            if c
            else "not recorded"
            for c in machines
        ]
    )
    pretraining, finetuning = [fold["pretraining"] for fold in folds], [fold["finetuning"] for fold in folds]
    seconds = [fold["seconds"] for fold in folds]
    runs = [n for f in finetuning for n in np.atleast_1d(f["epochs_run"]).tolist()]
    if _seed_ensemble(folds[0]):
        choice = "no choice is made on the data: five networks with their own seeds are averaged"
        budgets = (
            f"fine-tuning {_distinct([f['max_epochs'] for f in finetuning])} epochs{_schedule(finetuning)}, no "
            "early stopping, every network on all of the fold's training data"
        )
    else:
        choice = (
            "the blend of the ensemble's networks with the forest is chosen out of fold inside each fold's training "
            "data"
            if folds[0].get("model") == "SiteNetEnsemble"
            else "the model choice uses a validation split inside each fold's training data"
        )
        budgets = (
            f"fine-tuning {_distinct([f['max_epochs'] for f in finetuning])} epochs max{_schedule(finetuning)} "
            f"(early stopping, patience {_distinct([f['patience'] for f in finetuning])}; "
            f"{min(runs)}-{max(runs)} run), RF "
            f"{_distinct([fold['random_forest']['n_estimators'] for fold in folds])} trees"
        )
    return (
        f"{'QUICK CHECK RUN (one fold, tiny budgets), not a leaderboard result. ' if quick else ''}"
        f"Compute per fold: {hardware}. {_pretraining_notes(pretraining)}; {choice}. Budgets: {budgets}. "
        "Wall time per fold "
        f"{min(seconds):.0f}-{max(seconds):.0f} s ({sum(seconds) / 60:.0f} min in all, {len(folds)} folds). "
        f"Tasks: {', '.join(tasks)}."
    )


def info(tasks: list[str], quick: bool, folds: list[dict]) -> dict:
    """The submission's info.json; ``folds`` are the ``params`` recorded for every fold of ``tasks``."""
    corpus = "encoder" in folds[0]["pretraining"]
    ensemble = folds[0].get("model") == "SiteNetEnsemble"
    cosine = folds[0]["finetuning"].get("lr_schedule") == "cosine"
    seeds = _seed_ensemble(folds[0])
    if ensemble:
        name = SEEDS_ALGORITHM if seeds else COSINE_ALGORITHM if cosine else ENSEMBLE_ALGORITHM
    else:
        name = CORPUS_ALGORITHM if corpus else ALGORITHM
    annealed = (
        f" Each network's learning rate falls from {folds[0]['finetuning']['lr']:g} to 0 along a cosine over "
        f"{folds[0]['finetuning']['max_epochs']} epochs."
        if cosine
        else ""
    )
    import matbench
    import matminer
    import pymatgen.core
    import sklearn
    import skorch

    import dim_sklearn

    return {
        "authors": "dim-sklearn developers",
        "algorithm": name,
        "algorithm_long": (
            "Site-Net encoder pretrained once with Deep InfoMax (local + global Jensen-Shannon objectives with "
            "domain-aware negatives) on a corpus of unlabelled structures from which every structure of the task "
            "is held out; SiteNetEnsemble on each fold's training data as a seed ensemble: five SiteNetRegressors "
            "fine-tuned from the encoder on all of the fold's training data, each with its own seed and without "
            "early stopping, averaged." + annealed
            if seeds
            else "Site-Net encoder pretrained once with Deep InfoMax (local + global Jensen-Shannon objectives with "
            "domain-aware negatives) on a corpus of unlabelled structures from which every structure of the task "
            "is held out; SiteNetEnsemble on each fold's training data: five SiteNetRegressors fine-tuned from the "
            "encoder, each on four of five folds of the training data and early-stopped on the fifth, averaged, "
            "and blended with a RandomForest on Magpie features in the share that fits the training data best out "
            "of fold (drawn toward an equal blend)." + annealed
            if ensemble
            else "Site-Net encoder pretrained once with Deep InfoMax (local + global Jensen-Shannon objectives with "
            "domain-aware negatives) on a corpus of unlabelled structures from which every structure of the task "
            "is held out; downstream model chosen on a 10% validation split of each fold's training data among "
            "RandomForests on the 64-d DIM features, on Magpie and on Magpie + DIM, SiteNetRegressor fine-tuned "
            "from the encoder, and the average of the fine-tuned model with the best RandomForest."
            if corpus
            else "Site-Net encoder pretrained per fold with Deep InfoMax (local + global Jensen-Shannon objectives "
            "with domain-aware negatives) on that fold's training structures only; downstream model chosen on a 10% "
            "validation split of the fold's training data among a RandomForest on the 64-d DIM features, "
            "SiteNetRegressor fine-tuned from the DIM encoder, and their average."
        ),
        "bibtex_refs": "\n\n".join(DeepInfoMaxFeaturizer().citations()),
        "notes": notes(tasks, quick, folds),
        "requirements": {
            "python": [
                f"dim-sklearn=={dim_sklearn.__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
                f"scikit-learn=={sklearn.__version__}",
                f"skorch=={skorch.__version__}",
                f"pymatgen=={pymatgen.core.__version__}",
                f"matminer=={matminer.__version__}",
                f"matbench=={matbench.__version__}",
                f"numpy=={np.__version__}",
            ]
        },
    }


def run(
    tasks: list[str],
    output_dir: Path,
    quick: bool = False,
    cache_dir: str | None = None,
    verbose: bool = False,
    encoder: Path | None = None,
    recipe: str = "choose",
):
    """Run ``tasks`` and write the submission folder; returns the ``MatbenchBenchmark``.

    ``encoder`` is a saved encoder pretrained on a corpus that held the tasks out (:func:`corpus_encoder`);
    without it, every fold pretrains its own. ``recipe`` is "choose" (a model chosen on a validation split)
    or "ensemble" / "ensemble-cosine" / "seeds" (``SiteNetEnsemble``; needs ``encoder``).

    Every finished fold is also kept in ``<output_dir>/matbench_v0.1_<algorithm>.progress.json`` (matbench
    cannot read back a partly recorded benchmark); a later run re-records those folds instead of recomputing
    them, and the file is removed once every fold of every task is recorded and matbench finds the results valid.
    """
    from matbench.bench import MatbenchBenchmark

    warnings.filterwarnings("ignore")
    budget, name = settings(quick, encoder is not None, recipe), algorithm(encoder, recipe)
    folder = output_dir / f"matbench_v0.1_{name}"
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
                predictions, params = run_fold(task, fold, budget, cache_dir, verbose, encoder, recipe)
                done[str(fold)] = {"predictions": predictions.tolist(), "params": params}
                tmp = progress_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(progress))
                tmp.replace(progress_path)
            task.record(fold, predictions, params=params)
            truth = np.asarray(task.get_test_data(fold, include_target=True)[1], dtype=float)
            print(
                f"{task.dataset_name} fold {fold}: MAE {np.abs(predictions - truth).mean():.4f} "
                f"({params['model']}; validation MAE {params['validation_mae']}; {params['seconds']:.0f} s)",
                flush=True,
            )
        report(task, name)
    benchmark.to_file(str(folder / "results.json.gz"))
    folds = [fold["params"] for name in tasks for fold in progress[name].values()]
    (folder / "info.json").write_text(json.dumps(info(tasks, quick, folds), indent=2) + "\n")
    shutil.copy(__file__, folder / Path(__file__).name)  # the script of the submission: this file, as it ran
    if all(task.all_folds_recorded for task in benchmark.tasks) and benchmark.is_valid:
        progress_path.unlink(missing_ok=True)
    return benchmark


def report(task, name: str = ALGORITHM) -> None:
    """Per-fold MAE, mean +- std, and the leaderboard beside it."""
    maes = [task.results[f"fold_{fold}"]["scores"]["mae"] for fold in task.folds if task.is_recorded[fold]]
    print(f"{task.dataset_name}: fold MAEs " + ", ".join(f"{m:.4f}" for m in maes))
    if not maes:
        return
    mean = float(np.mean(maes))
    print(f"{task.dataset_name}: {name} mean MAE {mean:.4f} +- {np.std(maes):.4f} over {len(maes)} fold(s)")
    board = {**LEADERBOARD.get(task.dataset_name, {}), name: mean}
    for rank, (entry, value) in enumerate(sorted(board.items(), key=lambda item: item[1]), start=1):
        print(f"  {rank}. {entry:16s} {value:.4f}" + ("   <- this run" if entry == name else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["matbench_phonons"])
    parser.add_argument("--quick", action="store_true", help="one fold, tiny budgets (a check, not a result)")
    parser.add_argument("--output-dir", type=Path, default=HERE / "benchmarks")
    parser.add_argument("--cache-dir", default=None, help="point-set cache folder")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--encoder",
        type=Path,
        default=None,
        help="a saved encoder pretrained on a corpus that held the tasks out (default: pretrain per fold)",
    )
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default="choose",
        help="choose: a model chosen on a 10%% validation split; ensemble: SiteNetEnsemble (needs --encoder); "
        "ensemble-cosine: the same, its networks from lr 1e-3 down a cosine; seeds: five networks on all the "
        "training data down that cosine to its end, averaged (needs --encoder)",
    )
    args = parser.parse_args()
    run(
        args.tasks,
        args.output_dir,
        quick=args.quick,
        cache_dir=args.cache_dir,
        verbose=args.verbose,
        encoder=args.encoder,
        recipe=args.recipe,
    )


if __name__ == "__main__":
    main()
