"""What the experiments measure: targets, splits, label subsets, budgets and the untrained baseline.

One protocol for the demo, the label-masking study, the benchmarks and the
learning tests:

- Split: [`holdout_split`][experiments.protocol.holdout_split], an 80/20 ``train_test_split(positions,
  test_size=0.2, random_state=0)``; Matbench tasks use their official fold 0
  instead ([`load_split`][experiments.protocol.load_split]).
- Label counts larger than the training split are capped at its size
  ([`capped_label_counts`][experiments.protocol.capped_label_counts]).
- Label subsets, two draws that the published figures depend on, each kept
  exactly:

  - keyed (the study and the benchmarks): [`label_subset`][experiments.protocol.label_subset] draws subset
    ``seed`` of ``n`` labels from ``default_rng([seed, n])``, so a subset depends
    only on its seed and size;
  - streamed (the demo): [`streamed_subsets`][experiments.protocol.streamed_subsets] draws every subset from one
    ``default_rng(0)`` stream, ``repeats`` per size, the sizes in increasing order.

- The untrained baseline: [`untrained_encoder`][experiments.protocol.untrained_encoder], the encoder at its random
  initialisation (``max_epochs=0``, ``random_state=0``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split

from dim_sklearn import DeepInfoMaxFeaturizer, load_dataset

__all__ = [
    "FULL",
    "QUICK",
    "TARGETS",
    "Budget",
    "Split",
    "Target",
    "capped_label_counts",
    "get_target",
    "holdout_split",
    "label_subset",
    "load_split",
    "slugify",
    "streamed_subsets",
    "untrained_encoder",
]


@dataclass(frozen=True)
class Target:
    """One property of one data set.

    ``baselines`` names the hand-crafted feature sets compared on it (the
    structure featurizers are too slow for the 37k-structure set, where the
    comparison that matters is with Magpie).
    """

    dataset: str
    column: str
    unit: str
    baselines: tuple[str, ...] = ("Magpie", "SineCoulombMatrix", "XRDPowderPattern", "OrbitalFieldMatrix")

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.column}"


def slugify(text: str) -> str:
    """A file-name-safe form of ``text``: runs of other characters become one underscore."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


TARGETS = (
    Target("flla", "formation_energy_per_atom", "eV/atom"),
    Target("mp_cs419", "band_gap", "eV"),
    Target("mp_cs419", "formation_energy_per_atom", "eV/atom"),
    Target("perov5", "heat_all", "eV/cell"),
    Target("matbench_phonons", "last phdos peak", "cm^-1"),
    Target("carbon24", "energy_per_atom", "eV/atom"),
    Target("mp_crysxpp", "formation_energy_per_atom", "eV/atom", baselines=("Magpie",)),
)


def get_target(name: str) -> Target:
    """A target of the study by its name, ``"<dataset>/<column>"``."""
    for target in TARGETS:
        if target.name == name:
            return target
    raise ValueError(f"unknown target {name!r}; known: {', '.join(t.name for t in TARGETS)}")


@dataclass(frozen=True)
class Budget:
    """Sizes, repeats and training budgets of a run of the study.

    ``finetune_samples`` bounds fine-tuning by the number of structures seen
    (epochs = samples / labels, at most ``finetune_max_epochs``), so every label
    count gets a comparable compute budget; early stopping ends most runs
    sooner. ``investigate`` names the targets on which the pretraining variants
    are tried (those where DIM features lost most to the untrained encoder);
    from ``large_labels`` labels on, ``large_subsets`` subsets are drawn;
    ``corpus_sets`` are the data sets of the widest pretraining corpus.
    """

    label_counts: tuple[int, ...] = (50, 100, 250, 1000)
    subsets: int = 25
    large_subsets: int = 5
    large_labels: int = 10_000
    seeds: int = 5
    pretrain_epochs: int = 40
    pretrain_patience: int = 10
    finetune_samples: int = 30_000
    finetune_max_epochs: int = 300
    finetune_patience: int = 20
    n_estimators: int = 100
    mlp_max_iter: int = 200
    train_limit: int | None = None
    test_limit: int | None = None
    ofm_datasets: tuple[str, ...] = ("matbench_phonons",)
    targets: tuple[Target, ...] = field(default=TARGETS)
    investigate: tuple[str, ...] = ("perov5/heat_all", "matbench_phonons/last phdos peak")
    corpus_sets: tuple[str, ...] = (
        "flla",
        "mp_cs419",
        "perov5",
        "carbon24",
        "matbench_phonons",
        "dielectric_constant",
        "elastic_tensor_2015",
        "piezoelectric_tensor",
    )

    def subsets_for(self, n_labels: int) -> int:
        """Label subsets drawn at ``n_labels``: ``large_subsets`` from ``large_labels`` labels on."""
        return self.large_subsets if n_labels >= self.large_labels else self.subsets

    def finetune_epochs(self, n_labels: int) -> int:
        return max(1, min(self.finetune_max_epochs, math.ceil(self.finetune_samples / n_labels)))


FULL = Budget()
"""The study as published in docs/results (the protocol's sizes and repeats)."""

QUICK = Budget(
    label_counts=(10, 20),
    subsets=2,
    seeds=2,
    pretrain_epochs=1,
    pretrain_patience=1,
    finetune_samples=40,
    finetune_max_epochs=2,
    finetune_patience=2,
    n_estimators=10,
    mlp_max_iter=50,
    train_limit=60,
    test_limit=30,
    targets=(get_target("matbench_phonons/last phdos peak"),),
    investigate=("matbench_phonons/last phdos peak",),
    corpus_sets=("dielectric_constant", "piezoelectric_tensor"),
)
"""One target, two sizes, two seeds, tiny budgets: checks the machinery (CI)."""


@dataclass
class Split:
    """A data set's structures with one target and its train/test positions."""

    target: Target
    structures: list
    y: np.ndarray
    train: np.ndarray
    test: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        """Every position the study touches: training then test."""
        return np.concatenate([self.train, self.test])


def _split_positions(dataset: str, frame) -> tuple[np.ndarray, np.ndarray]:
    if dataset.startswith("matbench_"):
        from matbench.metadata import mbv01_validation

        fold = mbv01_validation.splits[dataset]["fold_0"]
        position = {mbid: i for i, mbid in enumerate(frame.index)}
        return np.array([position[m] for m in fold["train"]]), np.array([position[m] for m in fold["test"]])
    return holdout_split(np.arange(len(frame)))


def holdout_split(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training and test positions: ``train_test_split(positions, test_size=0.2, random_state=0)``."""
    train, test = train_test_split(positions, test_size=0.2, random_state=0)
    return np.asarray(train), np.asarray(test)


def load_split(target: Target, budget: Budget, data_home: str | None = None) -> Split:
    """The target's split: Matbench fold 0 for Matbench tasks, else an 80/20 split (random_state=0).

    With ``budget.train_limit`` / ``test_limit`` only the first positions of
    each part are kept (quick runs).
    """
    structures, frame = load_dataset(target.dataset, data_home)
    y = frame[target.column].to_numpy(dtype=float)
    if not np.isfinite(y).all():
        raise ValueError(f"{target.name} has missing values")
    train, test = _split_positions(target.dataset, frame)
    return Split(target, structures, y, train[: budget.train_limit], test[: budget.test_limit])


def capped_label_counts(n_train: int, counts: Iterable[int]) -> list[int]:
    """The label counts in increasing order, each at most ``n_train``, without repeats."""
    return sorted({min(n, n_train) for n in counts})


def label_subset(train: np.ndarray, n_labels: int, seed: int) -> np.ndarray:
    """The labelled training structures of one repeat (keyed draw): the same for every method.

    Drawn from ``default_rng([seed, n_labels])``: the subset depends on its seed
    and size only, so any slice of the study redraws the same subsets.
    """
    return np.random.default_rng([seed, n_labels]).choice(train, size=n_labels, replace=False)


def streamed_subsets(
    train: np.ndarray, label_counts: Sequence[int], repeats: int, seed: int = 0
) -> dict[int, list[np.ndarray]]:
    """The demo's labelled subsets (streamed draw): ``repeats`` per label count, from one stream.

    One ``default_rng(seed)`` draws, for each count of
    ``capped_label_counts(len(train), label_counts)`` in turn,
    ``repeats`` subsets without replacement; the subsets of a count therefore
    depend on the counts and repeats drawn before it.
    """
    rng = np.random.default_rng(seed)
    return {
        n: [rng.choice(train, n, replace=False) for _ in range(repeats)]
        for n in capped_label_counts(len(train), label_counts)
    }


def untrained_encoder(structures: Sequence, cache_dir: str | None = None, **params) -> DeepInfoMaxFeaturizer:
    """The encoder at its random initialisation: ``DeepInfoMaxFeaturizer(max_epochs=0, random_state=0)``.

    ``structures`` only complete the fit (with no epochs the weights depend on
    ``random_state`` alone); ``params`` change the architecture, e.g.
    ``n_rbf=0`` for the paper's raw-distance input instead of the default
    radial-basis expansion.
    """
    return DeepInfoMaxFeaturizer(max_epochs=0, random_state=0, cache_dir=cache_dir, **params).fit(list(structures))
