"""A 2-D map of the shipped encoder's vectors of the embedded set, coloured by formation energy and crystal system.

    python scripts/embedding_map.py --out docs/embedding_map.png

t-SNE (scikit-learn, perplexity 30, PCA initialisation, ``random_state=0``) of the 64-d vectors of the 2,000
``mp_crysxpp_2k`` structures, which the encoder's pretraining never saw; crystal systems from pymatgen's
``SpacegroupAnalyzer`` (default tolerances).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from sklearn.manifold import TSNE

from dim_sklearn import DeepInfoMaxFeaturizer, load_dataset

SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/embedding_map.png"))
    args = parser.parse_args()
    structures, frame = load_dataset("mp_crysxpp_2k")
    X = DeepInfoMaxFeaturizer.from_pretrained().transform(structures)
    xy = TSNE(n_components=2, perplexity=30, init="pca", random_state=0).fit_transform(X)
    systems = np.array([SpacegroupAnalyzer(s).get_crystal_system() for s in structures])

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2))
    energy = frame["formation_energy_per_atom"].to_numpy()
    points = left.scatter(xy[:, 0], xy[:, 1], c=np.clip(energy, -4.5, 1.0), s=5, cmap="viridis")
    fig.colorbar(points, ax=left, label="formation energy (eV/atom, clipped to [-4.5, 1])")
    left.set_title("coloured by formation energy", fontsize=10)
    colours = plt.get_cmap("tab10")
    for k, system in enumerate(SYSTEMS):
        mask = systems == system
        right.scatter(xy[mask, 0], xy[mask, 1], s=5, color=colours(k), label=f"{system} ({mask.sum()})")
    right.legend(fontsize=8, markerscale=3)
    right.set_title("coloured by crystal system", fontsize=10)
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "t-SNE of the shipped encoder's vectors: the 2,000 structures of mp_crysxpp_2k (never seen in pretraining)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(
        f"wrote {args.out}: {len(structures)} structures, "
        + ", ".join(f"{s} {int((systems == s).sum())}" for s in SYSTEMS)
    )


if __name__ == "__main__":
    main()
