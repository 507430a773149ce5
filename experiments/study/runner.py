"""Running the label-masking study: every single fit is one row of a CSV ledger.

Rows are appended as runs finish and a row already in the ledger is never run
again, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler
from torch.nn import L1Loss

from dim_sklearn import SiteNetEnsemble, SiteNetRegressor

from ..protocol import Budget, Split, Target, capped_label_counts, label_subset, load_split, untrained_encoder
from .features import (
    AUTO,
    COSINE_LR,
    FAST_LR,
    FOUNDATION,
    HAND_CRAFTED,
    LONG_BUDGET,
    RAW_UNTRAINED,
    RBF_SCRATCH,
    SCRATCH_COSINE,
    SCRATCH_LONG,
    SCRATCH_MAGPIE_HEAD,
    SCRATCH_WHOLE_COSINE,
    SCRATCH_WHOLE_FAST,
    SCRATCH_WHOLE_L1,
    SHIPPED,
    SHIPPED_COSINE,
    SHIPPED_LONG,
    SHIPPED_MAGPIE_HEAD,
    SHIPPED_WHOLE_COSINE,
    SHIPPED_WHOLE_FAST,
    SHIPPED_WHOLE_L1,
    UNIONS,
    VARIANTS,
    feature_table,
    pretrained_encoder,
    shipped_encoder,
)

__all__ = [
    "ENSEMBLE",
    "ENSEMBLE_NETWORKS",
    "ENSEMBLE_SEEDS",
    "ENSEMBLE_STARTS",
    "OPT_IN",
    "Ledger",
    "run_ensembles",
    "run_study",
    "sklearn_models",
    "standardise",
]

Fitted = TypeVar("Fitted", SiteNetRegressor, SiteNetEnsemble)

COLUMNS = ("dataset", "target", "n_labels", "seed", "features", "model", "mae", "seconds", "epochs")
KEY = COLUMNS[:6]
MAE_DIGITS = 6
"""Significant digits of the test MAE in the ledger (far below the spread over subsets; keeps the file small)."""


class Ledger:
    """A CSV of results, one row per fit, appended as fits finish; by default the study's columns.

    ``key_columns`` identify a fit: a row whose key is in the file is never run again.
    """

    def __init__(self, path: Path, columns: tuple[str, ...] = COLUMNS, key_columns: tuple[str, ...] = KEY):
        self.path = Path(path)
        self.columns, self.key_columns = columns, key_columns
        self.done: set[tuple[str, ...]] = set()
        if self.path.is_file():
            with self.path.open(newline="") as handle:
                self.done = {tuple(row[k] for k in key_columns) for row in csv.DictReader(handle)}

    def key(self, **row) -> tuple[str, ...]:
        return tuple(str(row[k]) for k in self.key_columns)

    def has(self, **row) -> bool:
        return self.key(**row) in self.done

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.is_file()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            if new_file:
                writer.writeheader()
            writer.writerows({**row, "mae": f"{float(row['mae']):.{MAE_DIGITS}g}"} for row in rows)
        self.done.update(self.key(**row) for row in rows)


def standardise(table: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Scale every column by its mean and std over all training structures (no labels needed).

    Missing values (failed featurisation) become the training mean, 0; constant
    columns become 0. Scaling on the whole unlabelled training split, as DIM
    pretraining uses it, keeps a column that happens to be constant in a small
    labelled subset from blowing up on the test structures.
    """
    with warnings.catch_warnings():  # a column with no value on the training rows: handled below
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "Degrees of freedom <= 0", RuntimeWarning)
        mean = np.nanmean(table[train], axis=0)
        std = np.nanstd(table[train], axis=0)
    scaled = (table - np.nan_to_num(mean)) / np.where(np.nan_to_num(std) > 0, std, np.inf)
    return np.nan_to_num(scaled, nan=0.0)


def sklearn_models(budget: Budget, seed: int) -> dict[str, object]:
    """RF, MLP(64) with a standardised target, and linear regression (on standardised features)."""
    mlp = MLPRegressor(hidden_layer_sizes=(64,), max_iter=budget.mlp_max_iter, random_state=seed)
    return {
        "RF": RandomForestRegressor(n_estimators=budget.n_estimators, random_state=seed, n_jobs=-1),
        "MLP": TransformedTargetRegressor(mlp, transformer=StandardScaler()),
        "Linear": LinearRegression(),
    }


def _mae(prediction: np.ndarray, truth: np.ndarray) -> float:
    return float(np.abs(np.asarray(prediction, dtype=float).ravel() - truth).mean())


def _row(split: Split, n_labels: int, seed: int, features: str, model: str, **values) -> dict:
    return {
        "dataset": split.target.dataset,
        "target": split.target.column,
        "n_labels": n_labels,
        "seed": seed,
        "features": features,
        "model": model,
        "epochs": "",
        **values,
    }


def _label_counts(split: Split, budget: Budget, sizes: list[int] | None = None) -> list[int]:
    return capped_label_counts(len(split.train), sizes or budget.label_counts)


def run_representation(
    split: Split, features: dict[str, np.ndarray], budget: Budget, ledger: Ledger, log: Callable[..., None]
) -> None:
    """scikit-learn models on every feature set, for every label count and label subset."""
    y_test = split.y[split.test]
    for n_labels in _label_counts(split, budget):
        start = time.perf_counter()
        for seed in range(budget.subsets_for(n_labels)):
            subset = label_subset(split.train, n_labels, seed)
            rows = []
            if not ledger.has(**_row(split, n_labels, seed, "none", "mean")):
                rows.append(
                    _row(
                        split,
                        n_labels,
                        seed,
                        "none",
                        "mean",
                        seconds=0.0,
                        mae=_mae(np.full(len(y_test), split.y[subset].mean()), y_test),
                    )
                )
            for name, X in features.items():
                for model_name, model in sklearn_models(budget, seed).items():
                    if ledger.has(**_row(split, n_labels, seed, name, model_name)):
                        continue
                    tic = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)  # MLP at a few labels
                        model.fit(X[subset], split.y[subset])
                        mae = _mae(model.predict(X[split.test]), y_test)
                    rows.append(
                        _row(
                            split,
                            n_labels,
                            seed,
                            name,
                            model_name,
                            mae=mae,
                            seconds=round(time.perf_counter() - tic, 3),
                        )
                    )
            ledger.append(rows)
        log(
            f"  {split.target.name}: {n_labels} labels x {budget.subsets_for(n_labels)} subsets, "
            "scikit-learn models done "
            f"({time.perf_counter() - start:.0f} s)"
        )


class Start(NamedTuple):
    """A fine-tuning start: the ledger's name, ``SiteNetRegressor``'s ``encoder``, ``init``, ``composition``,
    ``lr`` and ``lr_schedule``, the multiple of the study's epoch budget it trains for, whether it stops
    early on a validation split (without: ``patience=None, train_split=None``, every epoch on every label), and
    the loss (``criterion``; None: the regressor's default, the squared error)."""

    name: str
    encoder: object
    init: str = "encoder"
    composition: str | None = None
    budget_factor: int = 1
    lr: float = 1e-4
    lr_schedule: str = "constant"
    early_stopping: bool = True
    criterion: type[torch.nn.Module] | None = None

    def regressor(self, budget: Budget, n_labels: int, seed: int, cache_dir: str | None) -> SiteNetRegressor:
        """The network this start fine-tunes at ``n_labels`` labels with ``seed``."""
        network = SiteNetRegressor(
            encoder=self.encoder,
            init=self.init,
            random_state=seed,
            max_epochs=self.max_epochs(budget, n_labels),
            patience=budget.finetune_patience,
            cache_dir=cache_dir,
            composition=self.composition,
            lr=self.lr,
            lr_schedule=self.lr_schedule,
        )
        if self.criterion is not None:
            network.set_params(criterion=self.criterion)
        return network if self.early_stopping else network.set_params(patience=None, train_split=None)

    def max_epochs(self, budget: Budget, n_labels: int) -> int:
        return min(budget.finetune_max_epochs, self.budget_factor * budget.finetune_epochs(n_labels))


OPTION_STARTS = (
    Start(SHIPPED_MAGPIE_HEAD, "pretrained", composition="magpie"),
    Start(SCRATCH_MAGPIE_HEAD, None, composition="magpie"),
    Start(SHIPPED_LONG, "pretrained", budget_factor=LONG_BUDGET),
    Start(SCRATCH_LONG, None, budget_factor=LONG_BUDGET),
    Start(SHIPPED_COSINE, "pretrained", lr=COSINE_LR, lr_schedule="cosine"),
    Start(SCRATCH_COSINE, None, lr=COSINE_LR, lr_schedule="cosine"),
    Start(SHIPPED_WHOLE_COSINE, "pretrained", lr=COSINE_LR, lr_schedule="cosine", early_stopping=False),
    Start(SCRATCH_WHOLE_COSINE, None, lr=COSINE_LR, lr_schedule="cosine", early_stopping=False),
    Start(SHIPPED_WHOLE_FAST, "pretrained", lr=FAST_LR, lr_schedule="cosine", early_stopping=False),
    Start(SCRATCH_WHOLE_FAST, None, lr=FAST_LR, lr_schedule="cosine", early_stopping=False),
    Start(SHIPPED_WHOLE_L1, "pretrained", lr=COSINE_LR, lr_schedule="cosine", early_stopping=False, criterion=L1Loss),
    Start(SCRATCH_WHOLE_L1, None, lr=COSINE_LR, lr_schedule="cosine", early_stopping=False, criterion=L1Loss),
)
"""The recipe's options, each from the shipped encoder and from random weights, as single networks and as the
ensembles' networks: a head that also sees the Magpie descriptors, ``LONG_BUDGET`` times the epochs, a cosine
schedule from ``COSINE_LR``, the same schedule trained to its end without early stopping, that from ``FAST_LR``
and that on the absolute error (L1 loss); all opt-in (``OPT_IN``)."""


OPT_IN = (RBF_SCRATCH, *(start.name for start in OPTION_STARTS))
"""Fine-tuning starts and ensembles that run only when ``--features`` names them."""


def starts(dim) -> tuple[Start, ...]:
    """The fine-tuning starts: random weights, the split's DIM encoder, the shipped encoder, ``init="auto"``
    between the shipped encoder and random weights, and, when asked for, random weights again
    (``RBF_SCRATCH``), the shipped encoder and random weights with a head that also sees the Magpie descriptors,
    both with ``LONG_BUDGET`` times the epochs, and both with a cosine schedule from ``COSINE_LR`` (with and without
    early stopping)."""
    return (
        Start("untrained", None),
        Start(RBF_SCRATCH, None),
        Start("DIM", dim),
        Start(SHIPPED, "pretrained"),
        Start(AUTO, "pretrained", "auto"),
        *OPTION_STARTS,
    )


def _asked(name: str, features: tuple[str, ...] | None) -> bool:
    """Whether a start runs: named in ``features``, or, without them, not ``OPT_IN``."""
    return name not in OPT_IN if features is None else name in features


def fit_uninterrupted(regressor: Fitted, structures: list, y: np.ndarray) -> Fitted:
    """``regressor.fit(structures, y)``, with Ctrl-C raised again after it.

    skorch ends training on a ``KeyboardInterrupt`` and returns the model as it stands, which the study would
    record as a finished run; here a SIGINT during the fit raises ``KeyboardInterrupt`` once ``fit`` returns, so
    the shortened run is never written to the ledger (and is run again when the study resumes).
    """
    if threading.current_thread() is not threading.main_thread():
        return regressor.fit(structures, y)
    interrupted = []

    def note(signum: int, frame: object) -> None:
        interrupted.append(signum)
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, note)
    try:
        regressor.fit(structures, y)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt("fine-tuning interrupted: the shortened run is not recorded")
    return regressor


def run_transfer(
    split: Split,
    dim,
    budget: Budget,
    ledger: Ledger,
    cache_dir: str | None,
    log: Callable[..., None],
    sizes: list[int] | None = None,
    features: tuple[str, ...] | None = None,
    kept: dict[str, dict] | None = None,
) -> None:
    """SiteNetRegressor fine-tuned from each of ``starts``; ``kept`` receives, per ``init="auto"`` row (its
    ledger key joined by "|"), the start it kept and the best validation loss of each."""
    test_structures, y_test = [split.structures[i] for i in split.test], split.y[split.test]
    for n_labels in _label_counts(split, budget, sizes):
        for seed in range(budget.seeds):
            subset = label_subset(split.train, n_labels, seed)
            for start in starts(dim):
                name, init = start.name, start.init
                if not _asked(name, features) or ledger.has(**_row(split, n_labels, seed, name, "fine-tuned")):
                    continue
                tic = time.perf_counter()
                regressor = fit_uninterrupted(
                    start.regressor(budget, n_labels, seed, cache_dir),
                    [split.structures[i] for i in subset],
                    split.y[subset],
                )
                mae = _mae(regressor.predict(test_structures), y_test)
                row = _row(split, n_labels, seed, name, "fine-tuned", mae=mae, epochs=len(regressor.history))
                row["seconds"] = round(time.perf_counter() - tic, 1)
                ledger.append([row])
                note = ""
                if init == "auto":
                    losses = {start: round(float(loss), 5) for start, loss in regressor.init_valid_losses_.items()}
                    if kept is not None:
                        kept["|".join(ledger.key(**row))] = {"kept": regressor.init_, "valid_loss": losses}
                    note = f", kept {regressor.init_}, validation losses {losses}"
                log(
                    f"  {split.target.name}: {n_labels} labels seed {seed} fine-tuned from {name}: "
                    f"MAE {mae:.4f} ({len(regressor.history)} epochs, {row['seconds']:.0f} s{note})"
                )


ENSEMBLE_STARTS = (Start(SHIPPED, "pretrained"), Start("untrained", None), *OPTION_STARTS)
"""The starts of the ensembles' networks: the shipped encoder and random weights, and (when asked for) the
recipe's options (``OPTION_STARTS``)."""
ENSEMBLE = "SiteNetEnsemble"
"""The ledger's model name of an ensemble blended with its composition forest."""
ENSEMBLE_NETWORKS = "SiteNetEnsemble, networks only"
"""The ledger's model name of the same ensemble's networks alone (their mean, from the same fit)."""
ENSEMBLE_SEEDS = "SiteNetEnsemble, seeds on all labels"
"""The ledger's model name of ``SiteNetEnsemble(resampling="none", composition=None)``: the networks of a start
without early stopping, each on every label with its own seed, averaged."""


def run_ensembles(
    split: Split,
    budget: Budget,
    ledger: Ledger,
    cache_dir: str | None,
    log: Callable[..., None],
    sizes: list[int] | None = None,
    features: tuple[str, ...] | None = None,
    folds: bool = True,
) -> None:
    """``SiteNetEnsemble`` from each of ``ENSEMBLE_STARTS``: two rows per fit on the folds, the blend and the
    networks alone; for a start without early stopping also a seed ensemble on all the labels (one row).
    ``folds=False`` fits the seed ensembles only."""
    test_structures, y_test = [split.structures[i] for i in split.test], split.y[split.test]
    for n_labels in _label_counts(split, budget, sizes):
        for seed in range(budget.seeds):
            subset = label_subset(split.train, n_labels, seed)
            structures, y = [split.structures[i] for i in subset], split.y[subset]
            for start in ENSEMBLE_STARTS:
                name = start.name
                if not _asked(name, features):
                    continue
                models = ((ENSEMBLE, ENSEMBLE_NETWORKS) if folds else ()) + (
                    () if start.early_stopping else (ENSEMBLE_SEEDS,)
                )
                if not models:
                    continue
                done = {m for m in models if ledger.has(**_row(split, n_labels, seed, name, m))}
                network = start.regressor(budget, n_labels, seed, cache_dir)
                for resampling, fit_models in (("folds", (ENSEMBLE, ENSEMBLE_NETWORKS)), ("none", (ENSEMBLE_SEEDS,))):
                    if not set(fit_models) & set(models) - done:
                        continue
                    tic = time.perf_counter()
                    ensemble = SiteNetEnsemble(
                        network,
                        resampling=resampling,
                        composition="magpie" if resampling == "folds" else None,
                        n_estimators=budget.n_estimators,
                        random_state=seed,
                    )
                    fit_uninterrupted(ensemble, structures, y)
                    seconds = round(time.perf_counter() - tic, 1)
                    columns = ensemble.transform(test_structures)
                    blend, networks = ensemble.blend(columns), columns[:, : len(ensemble.estimators_)].mean(axis=1)
                    epochs = round(float(np.mean([len(net.history) for net in ensemble.estimators_])))
                    rows = [
                        _row(split, n_labels, seed, name, model, mae=_mae(prediction, y_test), epochs=epochs)
                        for model, prediction in zip(fit_models, (blend, networks))
                    ]
                    for row in rows:
                        row["seconds"] = seconds
                    ledger.append(rows)
                    maes = ", ".join(f"{row['model']} {row['mae']:.4f}" for row in rows)
                    share = f" (networks' share {ensemble.weight_:.2f}, best {ensemble.best_weight_:.2f})"
                    log(
                        f"  {split.target.name}: {n_labels} labels seed {seed} ensemble from {name}: {maes}"
                        f"{share if ensemble.forest_ is not None else ''} ({epochs} epochs, {seconds:.0f} s)"
                    )


def _representations(
    split: Split,
    budget: Budget,
    work_dir: Path,
    cache_dir: str | None,
    data_home: str | None,
    verbose: bool,
    meta: dict,
    log: Callable[..., None],
    only: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Every feature set of the split (or those in ``only``), cached in ``work_dir``; DIM pretrained if needed."""
    needed = None if only is None else set(only) | {part for name in only for part in UNIONS.get(name, ())}

    def wanted(name: str) -> bool:
        return needed is None or name in needed

    computers, keys = {}, {}
    if wanted("DIM"):
        dim, info = pretrained_encoder(split, budget, work_dir, cache_dir, verbose)
        meta["pretraining"][split.target.dataset] = info
        computers["DIM"], keys["DIM"] = dim.transform, f"-{info['max_epochs']}ep"
    if wanted(SHIPPED):
        shipped, meta["pretraining"][SHIPPED] = shipped_encoder(cache_dir)
        computers[SHIPPED], keys[SHIPPED] = shipped.transform, f"-{meta['pretraining'][SHIPPED]['weights']}"
    first = [split.structures[split.train[0]]]
    untrained = untrained_encoder(first, cache_dir)
    if wanted("untrained"):
        computers["untrained"] = untrained.transform
    if untrained.n_rbf and wanted(RAW_UNTRAINED):  # the paper's raw-distance encoder: a random encoder to take instead
        computers[RAW_UNTRAINED] = untrained_encoder(first, cache_dir, n_rbf=0).transform
    computers.update(
        {
            name: f
            for name, f in HAND_CRAFTED.items()
            if name in split.target.baselines
            and wanted(name)
            and (name != "OrbitalFieldMatrix" or split.target.dataset in budget.ofm_datasets)
        }
    )
    if importlib.util.find_spec("chgnet") is not None:
        computers.update({name: f for name, f in FOUNDATION.items() if wanted(name)})
    features = {}
    for name, compute in computers.items():
        table, about = feature_table(name, compute, split, work_dir, keys.get(name, ""))
        features[name] = standardise(table, split.train)
        meta["featurisation"][f"{split.target.dataset}/{name}"] = about
        log(
            f"  {split.target.dataset}: {name} features, {about['width']} columns, {about['failed']} failed, "
            f"{about['seconds']:.0f} s"
        )
    # Standardising each block is standardising the union: the scaling is per column.
    features.update(
        {
            name: np.hstack([features[a], features[b]])
            for name, (a, b) in UNIONS.items()
            if a in features and b in features
        }
    )
    return {name: X for name, X in features.items() if only is None or name in only}


def _variants(
    split: Split,
    budget: Budget,
    work_dir: Path,
    cache_dir: str | None,
    data_home: str | None,
    verbose: bool,
    meta: dict,
    log: Callable[..., None],
    only: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Features of the encoders pretrained the other ways (longer, plain negatives, more data)."""
    features = {}
    for pretraining in VARIANTS:
        if only is not None and pretraining.name not in only:
            continue
        encoder, info = pretrained_encoder(split, budget, work_dir, cache_dir, verbose, pretraining, data_home)
        meta["pretraining"][f"{split.target.dataset} ({pretraining.name})"] = info
        table, about = feature_table(pretraining.name, encoder.transform, split, work_dir, f"-{info['max_epochs']}ep")
        meta["featurisation"][f"{split.target.dataset}/{pretraining.name}"] = about
        features[pretraining.name] = standardise(table, split.train)
        log(f"  {split.target.dataset}: {pretraining.name}, {info['epochs']} epochs (best {info['best_epoch']})")
    return features


def _processor() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _hardware() -> dict:
    return {
        "machine": platform.machine(),
        "processor": _processor(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _merge_metadata(meta: dict, run: dict, path: Path) -> None:
    """Fold ``meta`` (whose current run is ``run``) into the JSON at ``path`` and back; write it atomically.

    Two study processes may share a results directory (one fitting scikit-learn
    models, one fine-tuning): each keeps the other's runs and pretraining records.
    """
    if path.is_file():
        disk = json.loads(path.read_text())
        for section in ("pretraining", "featurisation", AUTO):
            meta[section] = {**disk.get(section, {}), **meta.get(section, {})}
        others = [
            other
            for other in disk.get("runs", [])
            if other["started"] != run["started"] or other["command"] != run["command"]
        ]
        meta["runs"] = sorted([*others, run], key=lambda each: each["started"])
    text = json.dumps(meta, indent=1, default=str)
    # the other process reads the old file or the whole new one, never a part
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(scratch, path)


def run_study(
    budget: Budget,
    results_dir: Path,
    work_dir: Path,
    cache_dir: str | None = None,
    data_home: str | None = None,
    parts: tuple[str, ...] = ("representation", "transfer", "ensemble", "investigation"),
    verbose: bool = False,
    command: str | None = None,
    features: tuple[str, ...] | None = None,
) -> Path:
    """Run (or resume) the study and write its report; returns the CSV path.

    ``parts``: "representation" (scikit-learn models on every feature set),
    "transfer" (fine-tuning), "ensemble" (``SiteNetEnsemble``) and "investigation" (pretraining variants on
    ``budget.investigate``), in that order; each runs for every target before
    the next starts, so the cheaper comparisons are complete first. ``features``
    restricts the feature sets and fine-tuning starts (default: all).
    """
    from .report import write_report

    log = print if verbose else (lambda *args, **kwargs: None)
    results_dir, work_dir = Path(results_dir), Path(work_dir)
    ledger = Ledger(results_dir / "label_masking.csv")
    meta_path = results_dir / "label_masking.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"runs": []}
    meta.setdefault("pretraining", {})
    meta.setdefault("featurisation", {})
    meta["budget"] = {k: v for k, v in vars(budget).items() if k != "targets"}
    meta["hardware"] = _hardware()
    run = {
        "command": command or " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_s": 0,
        "torch_threads": torch.get_num_threads(),
    }
    meta["runs"].append(run)
    start = time.perf_counter()

    def save() -> None:
        run["wall_s"] = round(time.perf_counter() - start)
        results_dir.mkdir(parents=True, exist_ok=True)
        _merge_metadata(meta, run, meta_path)

    def scikit_learn(targets: list[Target], representations: Callable[..., dict[str, np.ndarray]]) -> None:
        for target in targets:
            log(f"{target.name}: {representations.__doc__.splitlines()[0]}")
            split = load_split(target, budget, data_home)
            table = representations(split, budget, work_dir, cache_dir, data_home, verbose, meta, log, features)
            save()
            run_representation(split, table, budget, ledger, log)
            save()

    try:
        if "representation" in parts:
            scikit_learn(list(budget.targets), _representations)
        if "transfer" in parts:
            splits = [load_split(target, budget, data_home) for target in budget.targets]
            encoders = []
            for split in splits:
                dim = None
                if features is None or "DIM" in features:
                    dim, meta["pretraining"][split.target.dataset] = pretrained_encoder(
                        split, budget, work_dir, cache_dir, verbose
                    )
                encoders.append(dim)
            for n_labels in budget.label_counts:  # every target at a size before the next, larger size
                for split, dim in zip(splits, encoders):
                    run_transfer(
                        split, dim, budget, ledger, cache_dir, log, [n_labels], features, meta.setdefault(AUTO, {})
                    )
                    save()
        if "ensemble" in parts or "seeds" in parts:
            for n_labels in budget.label_counts:
                for target in budget.targets:
                    split = load_split(target, budget, data_home)
                    run_ensembles(split, budget, ledger, cache_dir, log, [n_labels], features, "ensemble" in parts)
                    save()
        if "investigation" in parts:
            scikit_learn([t for t in budget.targets if t.name in budget.investigate], _variants)
    finally:
        save()
        write_report(ledger.path, meta, results_dir)
    return ledger.path
