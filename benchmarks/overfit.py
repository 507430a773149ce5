"""Can SiteNetRegressor fit a few structures of a data set at all? (A capacity check, not a benchmark of error.)

Fits ``--n`` structures of the study's training split (the same draw as its
label subsets) with no validation split and no early stopping, then prints the
standardised training loss every 10 epochs and the spread of the training
predictions relative to the targets' (1 = fitted, 0 = predicts the mean).
``--encoder`` starts from a saved DIM featurizer folder, ``--freeze`` keeps it
fixed. Used to show that Site-Net cannot fit carbon24 (see the study's discussion):

    python benchmarks/overfit.py --target carbon24/energy_per_atom --lr 1e-3
    python benchmarks/overfit.py --target perov5/heat_all --lr 1e-3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dim_sklearn import SiteNetRegressor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's experiments/ package
from experiments.protocol import FULL, get_target, label_subset, load_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="carbon24/energy_per_atom", help="dataset/target, as in the study")
    parser.add_argument("--n", type=int, default=32, help="structures to fit")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--encoder", default=None, help="a saved DeepInfoMaxFeaturizer folder")
    parser.add_argument("--freeze", action="store_true", help="freeze the encoder (needs --encoder)")
    args = parser.parse_args()
    split = load_split(get_target(args.target), FULL)
    subset = label_subset(split.train, args.n, 0)
    structures, y = [split.structures[i] for i in subset], split.y[subset]
    regressor = SiteNetRegressor(
        encoder=args.encoder,
        freeze_encoder=args.freeze,
        random_state=0,
        max_epochs=args.epochs,
        patience=args.epochs,
        lr=args.lr,
        train_split=None,
    ).fit(structures, y)
    losses = [row["train_loss"] for row in regressor.history]
    print("training loss (standardised), every 10 epochs:", " ".join(f"{x:.3f}" for x in losses[::10]))
    print(
        f"final training loss {losses[-1]:.3f}; prediction std / target std "
        f"{np.std(regressor.predict(structures)) / np.std(y):.4f}"
    )


if __name__ == "__main__":
    main()
