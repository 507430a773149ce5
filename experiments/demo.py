"""The main job: what the shipped encoder gives a user who has a few labels.

On the embedded ``mp_crysxpp_2k`` set (Materials Project formation energies drawn
from mp_crysxpp's test split, which the shipped encoder's pretraining corpus
holds out), featurise every structure with the shipped encoder (no training),
then, on a held-out split, compare a RandomForest on Magpie composition
features, on the DIM vectors, on both side by side and on the same encoder
untrained, and ``SiteNetRegressor`` fine-tuned from the shipped encoder and
from scratch. Needs no data folder, no download and no pretraining.

    python -m experiments demo
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_absolute_error

from dim_sklearn import DeepInfoMaxFeaturizer, SiteNetEnsemble, SiteNetRegressor, load_dataset
from dim_sklearn.composition import magpie_features

from .protocol import holdout_split, streamed_subsets, untrained_encoder

__all__ = ["FINE_TUNED", "FOREST_FEATURES", "format_table", "plot_table", "run_demo"]

FOREST_FEATURES = ("Magpie", "DIM", "Magpie + DIM", "untrained")
"""RandomForest inputs: composition features, the shipped encoder's vectors, both, the encoder untrained."""
FINE_TUNED = ("from scratch", "from DIM", "ensemble")
"""Fine-tuned models: SiteNetRegressor from random weights and from the shipped encoder, and SiteNetEnsemble (five
networks from the shipped encoder, blended with a forest on Magpie)."""


def run_demo(
    dataset: str = "mp_crysxpp_2k",
    target: str = "formation_energy_per_atom",
    label_counts: Sequence[int] = (50, 100, 250, 1000),
    repeats: int = 5,
    finetune_counts: Sequence[int] = (50, 100, 250),
    finetune_samples: int = 10_000,
    encoder: str | DeepInfoMaxFeaturizer = "pretrained",
    data_home: str | None = None,
    cache_dir: str | None = None,
    limit: int | None = None,
    verbose: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Test MAE of every method at every label count.

    The split is [`holdout_split`][experiments.protocol.holdout_split] of the rows with a
    finite target. For each label count, ``repeats`` random labelled subsets of
    the training split ([`streamed_subsets`][experiments.protocol.streamed_subsets]) train the
    forests (the same subsets for every feature set); the untrained encoder is
    [`untrained_encoder`][experiments.protocol.untrained_encoder]. The first
    subset of each of ``finetune_counts`` is also fine-tuned from both starts,
    and given to ``SiteNetEnsemble`` with the network from the DIM encoder, for
    ``finetune_samples`` structures seen (at most 100 epochs, early stopping
    with patience 10).

    Parameters
    ----------
    encoder : "pretrained", folder or fitted DeepInfoMaxFeaturizer, default="pretrained"
        The DIM encoder: the one that ships with the package by default.
    limit : int, optional
        Only the first ``limit`` structures (a quick run).

    Returns
    -------
    table : DataFrame
        Indexed by label count; columns ``"<method> MAE"`` and ``"<method> std"``
        for the forests, ``"<start> MAE"`` for fine-tuning (NaN where not run).
    info : dict
        Sizes, the encoder's record and timings.
    """
    log = print if verbose else (lambda *args, **kwargs: None)
    start = time.perf_counter()
    structures, frame = load_dataset(dataset, data_home)
    structures, y = structures[:limit], frame[target].to_numpy(dtype=float)[:limit]
    train, test = holdout_split(np.flatnonzero(np.isfinite(y)))
    if isinstance(encoder, DeepInfoMaxFeaturizer):
        dim = encoder
    elif encoder == "pretrained":
        dim = DeepInfoMaxFeaturizer.from_pretrained()
    else:
        dim = DeepInfoMaxFeaturizer.load(encoder)
    dim.set_params(cache_dir=cache_dir)
    untrained = untrained_encoder(structures[:1], cache_dir)
    log(
        f"{dataset}: {len(train)} training and {len(test)} test structures; featurising with the DIM encoder, "
        "the untrained encoder and Magpie"
    )
    X = {
        "DIM": dim.transform(structures),
        "untrained": untrained.transform(structures),
        "Magpie": np.nan_to_num(magpie_features(structures)),
    }
    X["Magpie + DIM"] = np.hstack([X["Magpie"], X["DIM"]])
    featurise_s = time.perf_counter() - start

    rows = []
    for n, subsets in streamed_subsets(train, label_counts, repeats).items():
        row: dict[str, float] = {"labels": n}
        for name in FOREST_FEATURES:
            maes = [
                mean_absolute_error(
                    y[test],
                    RandomForestRegressor(random_state=k, n_jobs=-1).fit(X[name][s], y[s]).predict(X[name][test]),
                )
                for k, s in enumerate(subsets)
            ]
            row[f"{name} MAE"], row[f"{name} std"] = float(np.mean(maes)), float(np.std(maes))
        for name, start_from in zip(FINE_TUNED, (None, dim, dim)):
            row[f"{name} MAE"] = np.nan
            if n in finetune_counts:
                epochs = min(100, math.ceil(finetune_samples / n))
                model = SiteNetRegressor(
                    encoder=start_from, max_epochs=epochs, patience=10, random_state=0, cache_dir=cache_dir
                )
                if name == "ensemble":
                    model = SiteNetEnsemble(model, random_state=0)
                model.fit([structures[i] for i in subsets[0]], y[subsets[0]])
                row[f"{name} MAE"] = mean_absolute_error(y[test], model.predict([structures[i] for i in test]))
        rows.append(row)
        log(f"  {n} labels done ({time.perf_counter() - start:.0f} s)")
    info = {
        "dataset": dataset,
        "target": target,
        "n_train": len(train),
        "n_test": len(test),
        "repeats": repeats,
        "encoder": dim.metadata_,
        "featurise_seconds": featurise_s,
        "total_seconds": time.perf_counter() - start,
    }
    return pd.DataFrame(rows).set_index("labels"), info


_TUNED_NAMES = {"from scratch": "tuned from scratch", "from DIM": "tuned from DIM", "ensemble": "SiteNetEnsemble"}


def format_table(table: pd.DataFrame, info: dict) -> str:
    """The comparison as printed by ``python -m experiments demo``."""
    corpus = info["encoder"].get("corpus", {})
    about = (
        f"the shipped encoder (pretrained on {corpus['n_structures']:,} structures, none of these)"
        if corpus
        else "the given encoder"
    )
    lines = [
        f"Test MAE on {info['dataset']} {info['target']}, {info['n_test']} test structures; DIM = {about}; "
        f"RandomForest mean +- std over {info['repeats']} label subsets, fine-tuning on the first; "
        f"{info['total_seconds']:.0f} s in all",
        f"{'labels':>6}"
        + "".join(f"  {name + ' RF':>18}" for name in FOREST_FEATURES)
        + "".join(f"  {_TUNED_NAMES[name]:>17}" for name in FINE_TUNED),
    ]
    for n, row in table.iterrows():
        cells = [f"{row[f'{name} MAE']:>9.4f} +- {row[f'{name} std']:.4f}" for name in FOREST_FEATURES]
        cells += [
            f"{row[f'{name} MAE']:>17.4f}" if not np.isnan(row[f"{name} MAE"]) else f"{'-':>17}" for name in FINE_TUNED
        ]
        lines.append(f"{n:>6}  " + "  ".join(cells))
    return "\n".join(lines)


def plot_table(table: pd.DataFrame, info: dict, path: str | Path) -> Path:
    """Test MAE against labels (log x), one line per method, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name in FOREST_FEATURES:
        ax.errorbar(
            table.index,
            table[f"{name} MAE"],
            yerr=table[f"{name} std"],
            marker="o",
            capsize=3,
            label=f"RandomForest on {name}",
        )
    for name in FINE_TUNED:
        tuned = table[f"{name} MAE"].dropna()
        label = "SiteNetEnsemble" if name == "ensemble" else f"SiteNetRegressor {name}"
        ax.plot(tuned.index, tuned.values, marker="s", ls="--", label=label)
    ax.set_xscale("log")
    ax.set_xticks(table.index)
    ax.set_xticklabels([str(n) for n in table.index])
    ax.minorticks_off()
    ax.set_xlabel("labelled training structures")
    ax.set_ylabel(f"test MAE ({info['target']})")
    ax.set_title(f"{info['dataset']}: {info['n_test']} test structures", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
