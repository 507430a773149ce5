"""The main job: does Deep InfoMax pretraining give better features than an untrained encoder?

Pretrain on the training structures of a real data set (labels unused), then fit
a RandomForestRegressor on DIM features and on features of the same encoder
before training, with a few labelled training structures, and score both on
the held-out test split. The default data set, ``mp_crysxpp_2k``, ships with
the package, so the demo needs no data folder and no download.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import train_test_split

from .datasets import load_dataset
from .featurizer import DeepInfoMaxFeaturizer


def compare_features(
    dataset: str = "mp_crysxpp_2k",
    target: str = "formation_energy_per_atom",
    label_counts: Sequence[int] = (50, 100, 250, 1000),
    repeats: int = 5,
    max_epochs: int = 6,
    random_state: int = 0,
    data_home: str | None = None,
    cache_dir: str | None = None,
    limit: int | None = None,
    verbose: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """RandomForest test MAE on DIM features vs untrained-encoder features.

    The split is ``train_test_split(arange(n), test_size=0.2, random_state=0)``;
    pretraining sees only the training structures. For each label count,
    ``repeats`` random labelled subsets of the training split are drawn; both
    feature sets use the same subsets and forests. ``limit`` keeps only the
    first ``limit`` structures of the data set (a quick run).

    Returns
    -------
    table : DataFrame
        One row per label count: mean and std of the test MAE for both feature
        sets and the relative change.
    info : dict
        Sizes, timings and the pretraining history.
    """
    log = print if verbose else (lambda *args, **kwargs: None)
    start = time.perf_counter()
    structures, frame = load_dataset(dataset, data_home)
    structures, frame = structures[:limit], frame.iloc[:limit]
    y = frame[target].to_numpy(dtype=float)
    keep = np.flatnonzero(np.isfinite(y))
    train, test = train_test_split(keep, test_size=0.2, random_state=0)
    train_structures = [structures[i] for i in train]
    test_structures = [structures[i] for i in test]
    log(f"{dataset}: {len(train)} training structures (pretraining, no labels), {len(test)} test structures")

    settings = dict(random_state=random_state, cache_dir=cache_dir)
    pretrained = DeepInfoMaxFeaturizer(max_epochs=max_epochs, patience=5, verbose=verbose, **settings)
    pretrained.fit(train_structures)
    untrained = DeepInfoMaxFeaturizer(max_epochs=0, **settings).fit(train_structures[:1])
    pretrain_s = time.perf_counter() - start
    features = {
        name: (model.transform(train_structures), model.transform(test_structures))
        for name, model in (("DIM", pretrained), ("untrained", untrained))
    }

    rng = np.random.default_rng(random_state)
    rows = []
    for n in label_counts:
        n = min(n, len(train))
        maes: dict[str, list[float]] = {name: [] for name in features}
        for repeat in range(repeats):
            subset = rng.choice(len(train), n, replace=False)
            for name, (X_train, X_test) in features.items():
                forest = RandomForestRegressor(random_state=repeat, n_jobs=-1)
                forest.fit(X_train[subset], y[train][subset])
                maes[name].append(mean_absolute_error(y[test], forest.predict(X_test)))
        dim, base = np.array(maes["DIM"]), np.array(maes["untrained"])
        rows.append({
            "labels": n,
            "DIM MAE": dim.mean(), "DIM std": dim.std(),
            "untrained MAE": base.mean(), "untrained std": base.std(),
            "change %": 100 * (dim.mean() - base.mean()) / base.mean(),
            "DIM wins": f"{int((dim < base).sum())}/{repeats}",
        })
    info = {
        "dataset": dataset, "target": target, "n_train": len(train), "n_test": len(test),
        "epochs": len(pretrained.history_), "best_epoch": pretrained.best_epoch_,
        "pretrain_seconds": pretrain_s, "total_seconds": time.perf_counter() - start,
        "history": pretrained.history_,
    }
    return pd.DataFrame(rows).set_index("labels"), info


def format_table(table: pd.DataFrame, info: dict) -> str:
    """The comparison as printed by ``dim-sklearn demo``."""
    lines = [
        f"RandomForest test MAE on {info['dataset']} {info['target']} ({info['n_test']} test structures); "
        f"DIM pretrained on the {info['n_train']} training structures for {info['epochs']} epochs "
        f"(best held-out epoch {info['best_epoch']}), {info['total_seconds']:.0f} s in all",
        f"{'labels':>7}  {'DIM features':>18}  {'untrained encoder':>18}  {'change':>7}  {'DIM wins':>8}",
    ]
    for n, row in table.iterrows():
        lines.append(
            f"{n:>7}  {row['DIM MAE']:>9.4f} +- {row['DIM std']:.4f}  "
            f"{row['untrained MAE']:>9.4f} +- {row['untrained std']:.4f}  {row['change %']:>+6.1f}%  {row['DIM wins']:>8}"
        )
    return "\n".join(lines)
