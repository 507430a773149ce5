"""Fine-tuning from scratch vs from a Deep InfoMax encoder, on a real property, at a few label counts.

Protocol (docs/method.md, sections 4-5; ``experiments.protocol``): ``holdout_split``, an 80/20
``train_test_split(arange(n), test_size=0.2, random_state=0)``; Deep InfoMax pretrains on the
training structures only (no labels); for every label count and seed, a random labelled subset of the
training split fine-tunes ``SiteNetRegressor`` twice, from random weights and
from the pretrained encoder (same subset, same seed, same settings), and both
are scored on the whole test split. Prints one row per label count with the
test MAE mean +- std over seeds for both starts, and the mean-predictor MAE.

    python benchmarks/finetune.py [--dataset mp_cs419] [--target formation_energy_per_atom]
                                  [--labels 50,100,250] [--seeds 5] [--pretrain-epochs 40]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from dim_sklearn import DeepInfoMaxFeaturizer, SiteNetRegressor, load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's experiments/ package
from experiments.protocol import holdout_split, label_subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mp_cs419")
    parser.add_argument("--target", default="formation_energy_per_atom")
    parser.add_argument("--labels", default="50,100,250")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--pretrain-epochs", type=int, default=40)
    parser.add_argument("--max-epochs", type=int, default=500, help="fine-tuning epochs at most (early stopping)")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    start = time.perf_counter()

    structures, frame = load_dataset(args.dataset)
    y = frame[args.target].to_numpy(dtype=float)
    train, test = holdout_split(np.arange(len(y)))
    test_structures, y_test = [structures[i] for i in test], y[test]
    featurizer = DeepInfoMaxFeaturizer(
        max_epochs=args.pretrain_epochs, patience=5, random_state=0, cache_dir=args.cache_dir
    ).fit([structures[i] for i in train])
    print(
        f"{args.dataset} {args.target}: {len(train)} training structures (DIM pretraining, "
        f"{len(featurizer.history_)} epochs, best {featurizer.best_epoch_}, {time.perf_counter() - start:.0f} s), "
        f"{len(test)} test structures; {torch.get_num_threads()} threads"
    )

    rows = []
    for n_labels in (int(n) for n in args.labels.split(",")):
        maes: dict[str, list[float]] = {"scratch": [], "DIM": [], "mean": []}
        for seed in range(args.seeds):
            subset = label_subset(train, n_labels, seed)
            X, target = [structures[i] for i in subset], y[subset]
            maes["mean"].append(float(np.abs(y_test - target.mean()).mean()))
            for name, encoder in (("scratch", None), ("DIM", featurizer)):
                reg = SiteNetRegressor(
                    encoder=encoder, max_epochs=args.max_epochs, random_state=seed, cache_dir=args.cache_dir
                ).fit(X, target)
                maes[name].append(float(np.abs(reg.predict(test_structures) - y_test).mean()))
                print(
                    f"  labels {n_labels:4d} seed {seed} {name:7s} MAE {maes[name][-1]:.4f} "
                    f"({len(reg.history)} epochs)",
                    flush=True,
                )
        rows.append((n_labels, maes))

    print(f"\ntest MAE ({args.target}), mean +- std over {args.seeds} label subsets / seeds")
    print(
        f"{'labels':>6}  {'from scratch':>16}  {'from DIM':>16}  {'change':>7}  {'DIM wins':>8}  {'mean predictor':>14}"
    )
    for n_labels, maes in rows:
        scratch, dim = np.array(maes["scratch"]), np.array(maes["DIM"])
        print(
            f"{n_labels:6d}  {scratch.mean():.4f} +- {scratch.std():.4f}  {dim.mean():.4f} +- {dim.std():.4f}  "
            f"{100 * (dim.mean() / scratch.mean() - 1):+6.1f}%  {int((dim < scratch).sum()):>4d}/{len(dim)}  "
            f"{np.mean(maes['mean']):14.4f}"
        )
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
