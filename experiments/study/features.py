"""The representations the study compares, computed once per data set and kept on disk.

DIM features come from an encoder pretrained on the split's training structures
(no labels); the untrained encoder is the same architecture at its random
initialisation ([`experiments.protocol.untrained_encoder`][experiments.protocol.untrained_encoder]); the
hand-crafted baselines are matminer featurizers.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dim_sklearn import DeepInfoMaxFeaturizer, load_dataset
from dim_sklearn.composition import magpie_features
from dim_sklearn.encoder import pretrained_path

from ..protocol import Budget, Split, slugify

__all__ = [
    "AUTO",
    "COSINE_LR",
    "FAST_LR",
    "FOUNDATION",
    "HAND_CRAFTED",
    "LONG_BUDGET",
    "MAIN",
    "RAW_UNTRAINED",
    "RBF_SCRATCH",
    "SCRATCH_COSINE",
    "SCRATCH_LONG",
    "SCRATCH_MAGPIE_HEAD",
    "SCRATCH_WHOLE_COSINE",
    "SCRATCH_WHOLE_FAST",
    "SCRATCH_WHOLE_L1",
    "SHIPPED",
    "SHIPPED_COSINE",
    "SHIPPED_LONG",
    "SHIPPED_MAGPIE_HEAD",
    "SHIPPED_WHOLE_COSINE",
    "SHIPPED_WHOLE_FAST",
    "SHIPPED_WHOLE_L1",
    "UNIONS",
    "VARIANTS",
    "Pretraining",
    "corpus_structures",
    "feature_table",
    "pretrained_encoder",
    "shipped_encoder",
]


def _sine_coulomb(structures: list) -> np.ndarray:
    from matminer.featurizers.structure import SineCoulombMatrix

    # fit only sets the padding length (the largest cell); it sees no labels.
    return _featurize(SineCoulombMatrix().fit(structures), structures)


def _xrd(structures: list) -> np.ndarray:
    from matminer.featurizers.structure import XRDPowderPattern

    return _featurize(XRDPowderPattern(), structures)


def _orbital_field(structures: list) -> np.ndarray:
    from matminer.featurizers.structure import OrbitalFieldMatrix

    with warnings.catch_warnings():  # its constructor builds numpy matrices, 94 warnings
        warnings.filterwarnings("ignore", "the matrix subclass", PendingDeprecationWarning)
        featurizer = OrbitalFieldMatrix(period_tag=False)
    return _featurize(featurizer, structures)


def _featurize(featurizer, inputs: list) -> np.ndarray:
    featurizer.set_n_jobs(1)  # matminer's default forked pool can hang once torch has started its threads
    with warnings.catch_warnings():  # the matrix featurizers use numpy matrices: dozens of warnings per structure
        warnings.filterwarnings("ignore", "the matrix subclass", PendingDeprecationWarning)
        rows = featurizer.featurize_many(inputs, ignore_errors=True, pbar=False)
    width = len(featurizer.feature_labels())
    return np.array([r if len(r) == width else [np.nan] * width for r in rows], dtype=float)


HAND_CRAFTED: dict[str, Callable[[list], np.ndarray]] = {
    "Magpie": magpie_features,
    "SineCoulombMatrix": _sine_coulomb,
    "XRDPowderPattern": _xrd,
    "OrbitalFieldMatrix": _orbital_field,
}
"""matminer baselines: name -> function of a list of structures giving (n, d) features (NaN rows on failure)."""


def _chgnet(structures: list, chunk: int = 500) -> np.ndarray:
    """CHGNet's 64-d ``crystal_fea`` (energy head only: no forces or stresses); NaN rows where its graph fails."""
    from chgnet.model import CHGNet

    model = CHGNet.load(verbose=False)
    features = np.full((len(structures), 64), np.nan)
    for start in range(0, len(structures), chunk):
        graphs, rows = [], []
        for i in range(start, min(start + chunk, len(structures))):
            try:
                graphs.append(model.graph_converter(structures[i]))
                rows.append(i)
            except (ValueError, RuntimeError, IndexError):  # a structure CHGNet cannot take: a NaN row
                continue
        if graphs:
            with warnings.catch_warnings():  # CHGNet turns a tensor that requires grad into a number, every batch
                warnings.filterwarnings("ignore", "Converting a tensor with requires_grad", UserWarning)
                out = model.predict_graph(graphs, task="e", return_crystal_feas=True, batch_size=50)
            features[rows] = [o["crystal_fea"] for o in (out if isinstance(out, list) else [out])]
    return features


FOUNDATION: dict[str, Callable[[list], np.ndarray]] = {"CHGNet": _chgnet}
"""Pretrained foundation models a user would try first (optional dependency ``chgnet``; trained on Materials
Project energies, forces, stresses and magnetic moments, so on MP-derived targets it has seen related labels)."""

RAW_UNTRAINED = "untrained, raw distances"
"""The untrained encoder with the paper's raw-distance input, beside the default (radial-basis) one."""

SHIPPED = "DIM shipped"
"""The encoder that ships with the package (``DeepInfoMaxFeaturizer.from_pretrained``), pretrained once on
every data set's training structures; every split's test structures are outside its corpus."""

RBF_SCRATCH = "untrained (radial-basis)"
"""Fine-tuning from random weights with the present (radial-basis) encoder, the shipped encoder's architecture,
on the targets whose "untrained" fine-tuning rows predate that default (they used the paper's raw distances);
run only when ``--features`` names it."""

AUTO = "auto (DIM shipped or scratch)"
"""Fine-tuning with ``SiteNetRegressor(encoder="pretrained", init="auto")``: from the shipped encoder and from
random weights on the same validation split, keeping the start with the lower validation loss."""

SHIPPED_MAGPIE_HEAD = "DIM shipped (Magpie head)"
"""Fine-tuning from the shipped encoder with ``SiteNetRegressor(composition="magpie")``: the head also sees the
Magpie descriptors of the composition; run only when ``--features`` names it."""

SCRATCH_MAGPIE_HEAD = "untrained (Magpie head)"
"""The same from random weights (the shipped encoder's architecture); run only when ``--features`` names it."""

LONG_BUDGET = 4
"""How many times the study's fine-tuning epochs ``SHIPPED_LONG`` and ``SCRATCH_LONG`` get (within
``Budget.finetune_max_epochs``): where the budget's cap stops fine-tuning, what longer training gives."""

SHIPPED_LONG = f"DIM shipped ({LONG_BUDGET}x budget)"
"""Fine-tuning from the shipped encoder for ``LONG_BUDGET`` times the epochs; run only when ``--features`` names
it."""

SCRATCH_LONG = f"untrained ({LONG_BUDGET}x budget)"
"""The same from random weights; run only when ``--features`` names it."""

COSINE_LR = 1e-3
"""The learning rate ``SHIPPED_COSINE`` and ``SCRATCH_COSINE`` start from (ten times the default)."""

SHIPPED_COSINE = "DIM shipped (cosine schedule)"
"""Fine-tuning from the shipped encoder with ``SiteNetRegressor(lr=COSINE_LR, lr_schedule="cosine")``: the
learning rate falls to 0 over the study's epochs; run only when ``--features`` names it."""

SCRATCH_COSINE = "untrained (cosine schedule)"
"""The same from random weights; run only when ``--features`` names it."""

SHIPPED_WHOLE_COSINE = "DIM shipped (whole cosine schedule)"
"""``SHIPPED_COSINE`` without early stopping (``SiteNetRegressor(patience=None)``): every epoch of the schedule
is trained and the final weights kept; a single network trains on all the labels (``train_split=None``), each
network of an ensemble on its folds. Run only when ``--features`` names it."""

SCRATCH_WHOLE_COSINE = "untrained (whole cosine schedule)"
"""The same from random weights; run only when ``--features`` names it."""

FAST_LR = 3e-3
"""The learning rate ``SHIPPED_WHOLE_FAST`` and ``SCRATCH_WHOLE_FAST`` start from (thirty times the default)."""

SHIPPED_WHOLE_FAST = "DIM shipped (whole cosine schedule from 3e-3)"
"""``SHIPPED_WHOLE_COSINE`` from ``FAST_LR``; run only when ``--features`` names it."""

SCRATCH_WHOLE_FAST = "untrained (whole cosine schedule from 3e-3)"
"""The same from random weights; run only when ``--features`` names it."""

SHIPPED_WHOLE_L1 = "DIM shipped (whole cosine schedule with L1 loss)"
"""``SHIPPED_WHOLE_COSINE`` trained on the absolute error (``criterion=torch.nn.L1Loss``), the study's metric,
instead of the squared error; run only when ``--features`` names it."""

SCRATCH_WHOLE_L1 = "untrained (whole cosine schedule with L1 loss)"
"""The same from random weights; run only when ``--features`` names it."""

UNIONS: dict[str, tuple[str, str]] = {
    "Magpie + DIM": ("Magpie", "DIM"),
    "Magpie + untrained": ("Magpie", "untrained"),
    "Magpie + DIM shipped": ("Magpie", SHIPPED),
    "Magpie + SineCoulombMatrix": ("Magpie", "SineCoulombMatrix"),
}
"""Composition features beside a structure representation: the columns of both, side by side, as
``sklearn.pipeline.FeatureUnion`` of the two featurizers gives them (docs/examples/magpie_plus_dim.py)."""


@dataclass(frozen=True)
class Pretraining:
    """How one DIM encoder of the study is pretrained; ``name`` is its feature set in the ledger.

    ``epochs_factor`` scales the budget's pretraining epochs. ``corpus="train"``
    uses the split's training structures; ``"all"`` adds every structure of the
    other data sets except those that match a test structure of the split
    (pymatgen ``StructureMatcher``, same reduced formula), so nothing tested is
    seen in pretraining.
    """

    name: str = "DIM"
    epochs_factor: float = 1.0
    domain_negatives: bool = True
    corpus: str = "train"
    description: str = "the study's pretraining"

    def epochs(self, budget: Budget) -> int:
        return max(1, round(self.epochs_factor * budget.pretrain_epochs))


MAIN = Pretraining()
VARIANTS = (
    Pretraining("DIM, 2.5x epochs", epochs_factor=2.5, description="2.5 times the epochs (patience unchanged)"),
    Pretraining(
        "DIM, no domain negatives",
        domain_negatives=False,
        description="negatives from other crystals of the batch only",
    ),
    Pretraining(
        "DIM, all data sets",
        epochs_factor=0.25,
        corpus="all",
        description="the training structures plus every other data set (test matches removed), a quarter of the epochs",
    ),
)
"""What the investigation tries where DIM loses: longer pretraining, the plain DIM negatives, more data."""

_PRETRAINING_SETTINGS = (
    "n_rbf",
    "local_scrambled",
    "batch_negatives",
    "kl_weight",
    "batch_sites",
    "lr",
    "weight_decay",
    "validation_fraction",
    "width",
    "local_dim",
    "global_width",
    "global_dim",
)
"""Featurizer parameters that change the pretrained encoder beyond epochs and negatives: they name its folder."""


def corpus_structures(split: Split, budget: Budget, data_home: str | None = None) -> tuple[list, dict]:
    """The training structures plus the structures of ``budget.corpus_sets`` that match no test structure.

    With ``budget.train_limit`` only the first structures of each set are taken.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    tested: dict[str, list] = {}
    for i in split.test:
        tested.setdefault(split.structures[i].composition.reduced_formula, []).append(split.structures[i])
    matcher = StructureMatcher()
    corpus, counts = [split.structures[i] for i in split.train], {"train": len(split.train)}
    for name in budget.corpus_sets:
        if name == split.target.dataset:
            continue
        others = load_dataset(name, data_home)[0][: budget.train_limit]
        kept = [s for s in others if not any(matcher.fit(s, t) for t in tested.get(s.composition.reduced_formula, ()))]
        corpus += kept
        counts[name] = len(kept)
        counts[f"{name} removed (match a test structure)"] = len(others) - len(kept)
    return corpus, counts


def pretrained_encoder(
    split: Split,
    budget: Budget,
    work_dir: Path,
    cache_dir: str | None = None,
    verbose: bool = False,
    pretraining: Pretraining = MAIN,
    data_home: str | None = None,
) -> tuple[DeepInfoMaxFeaturizer, dict]:
    """DIM pretrained without labels on the split's training structures (or a wider corpus), kept in ``work_dir``.

    Returns the featurizer and what the pretraining did (structures, epochs,
    best epoch, minutes spent in training epochs, summed over resumed runs).
    A finished encoder is loaded, not retrained; an interrupted one resumes
    from its checkpoint.
    """
    epochs = pretraining.epochs(budget)
    featurizer = DeepInfoMaxFeaturizer(
        max_epochs=epochs,
        patience=budget.pretrain_patience,
        domain_negatives=pretraining.domain_negatives,
        random_state=0,
        cache_dir=cache_dir,
        verbose=verbose,
        ignore_errors=pretraining.corpus == "all",
    )
    settings = {k: v for k, v in featurizer.get_params().items() if k in _PRETRAINING_SETTINGS}
    tag = hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=4).hexdigest()
    name = f"{split.target.dataset}-dim-{epochs}ep-{len(split.train)}-{tag}"
    if pretraining != MAIN:
        name += "-" + slugify(pretraining.name.lower())
    folder, info_path = work_dir / "encoders" / name, work_dir / "encoders" / f"{name}.json"
    if info_path.is_file():
        run_time = {k: v for k, v in featurizer.get_params().items() if k in ("cache_dir", "verbose", "ignore_errors")}
        featurizer = DeepInfoMaxFeaturizer.load(folder).set_params(**run_time)  # load leaves them at their defaults
        return featurizer, {**json.loads(info_path.read_text()), **_history_summary(featurizer)}
    if pretraining.corpus == "all":
        corpus, counts = corpus_structures(split, budget, data_home)
    else:
        corpus, counts = [split.structures[i] for i in split.train], {"train": len(split.train)}
    featurizer.set_params(checkpoint_dir=str(work_dir / "checkpoints" / name)).fit(corpus)
    featurizer.save(folder)
    info = {
        "dataset": split.target.dataset,
        "features": pretraining.name,
        "description": pretraining.description,
        "n_train": len(corpus),
        "corpus": counts,
        "max_epochs": epochs,
        "patience": budget.pretrain_patience,
        "domain_negatives": pretraining.domain_negatives,
        "settings": settings,
    }
    info_path.write_text(json.dumps(info, indent=1))
    return featurizer, {**info, **_history_summary(featurizer)}


def _history_summary(featurizer: DeepInfoMaxFeaturizer) -> dict:
    history = featurizer.history_
    first, best = history[0], history[max(featurizer.best_epoch_, 1) - 1]
    terms = {
        f"{when}_{term}": row[f"valid_{term}"]
        for when, row in (("first", first), ("best", best))
        for term in ("local_dim", "global_dim", "vector_std")
        if f"valid_{term}" in row
    }
    return {
        "epochs": len(history),
        "best_epoch": featurizer.best_epoch_,
        "seconds": round(sum(row["seconds"] for row in history), 1),
        "first_loss": first.get("valid_loss", first["loss"]),
        "best_loss": min(row.get("valid_loss", row["loss"]) for row in history),
        **terms,
    }


def shipped_encoder(cache_dir: str | None = None) -> tuple[DeepInfoMaxFeaturizer, dict]:
    """The shipped encoder and its pretraining record in the layout of ``pretrained_encoder``'s.

    The record's ``weights`` is a short hash of the weights file: feature tables are cached under it.
    """
    weights = (pretrained_path() / "encoder.safetensors").read_bytes()
    featurizer = DeepInfoMaxFeaturizer.from_pretrained(cache_dir=cache_dir, ignore_errors=True)
    meta, held_out = featurizer.metadata_, featurizer.metadata_["held_out"]
    info = {
        "weights": hashlib.blake2b(weights, digest_size=4).hexdigest(),
        "n_train": meta["corpus"]["n_structures"],
        "corpus": meta["corpus"]["sets"],
        "max_epochs": meta["settings"]["max_epochs"],
        "epochs": meta["epochs"],
        "best_epoch": meta["best_epoch"],
        "seconds": meta["training_seconds"],
        "settings": meta["settings"],
        **{
            f"{when}_{term}": held_out[f"{when}_{term}"]
            for when in ("first", "best")
            for term in ("loss", "local_dim", "global_dim", "vector_std")
        },
    }
    return featurizer, info


def feature_table(
    name: str, compute: Callable[[list], np.ndarray], split: Split, work_dir: Path, key: str = ""
) -> tuple[np.ndarray, dict]:
    """Features of every row the study touches, cached in ``work_dir``.

    Returns an array with one row per structure of the data set (NaN for rows
    outside the split) and ``{"seconds", "failed", "width"}``.
    """
    path = work_dir / "features" / split.target.dataset / f"{slugify(name)}{key}.npz"
    rows = np.sort(split.rows)
    if path.is_file():
        stored = np.load(path)
        if np.array_equal(stored["rows"], rows):
            values, seconds = stored["X"], float(stored["seconds"])
        else:
            path.unlink()
    if not path.is_file():
        start = time.perf_counter()
        values = np.asarray(compute([split.structures[i] for i in rows]), dtype=float)
        seconds = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, rows=rows, X=values, seconds=seconds)
    table = np.full((len(split.structures), values.shape[1]), np.nan)
    table[rows] = values
    failed = int(np.isnan(values).all(axis=1).sum())
    return table, {"seconds": round(seconds, 1), "failed": failed, "width": values.shape[1]}
