"""Pretrain an encoder to ship with the package on the corpus of scripts/pretraining_corpus.py.

    python scripts/pretrain_shipped.py --data-home ../shared/data --cache-dir ~/.cache/dim-sklearn \
        --checkpoint-dir ~/.cache/dim-sklearn/shipped --out dim_sklearn/encoder/shipped/dim-38k

Uses the featurizer's defaults (the settings chosen on the mp_crysxpp training split, docs/deep-infomax.md)
with ``random_state=0``, ``--epochs`` epochs (``--patience``: early stopping on the held-out DIM loss) and
the widths and attention blocks given; an interrupted run resumes from ``--checkpoint-dir``. ``--snapshot-dir``
keeps the encoder of every epoch (``epoch-001``, ...), for the selection curves of
``python -m experiments.selection``. The saved encoder's ``metadata`` records the corpus (size, sha256, rows per
set), the settings, the epochs, the held-out DIM terms against chance, the time and the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

import pandas as pd
import torch

from dim_sklearn import DeepInfoMaxFeaturizer, PointSetConfig, PretrainedEncoder, load_dataset
from dim_sklearn.nn import CHANCE, DeepInfoMax, SiteNetEncoder
from dim_sklearn.pretrain import PretrainCallback

TERMS = ("loss", "local_dim", "global_dim", "vector_std")
POINT_SET = ("max_atoms", "max_sites", "oxidation", "min_distance")
ARCHITECTURE = ("width", "local_dim", "global_width", "global_dim", "n_blocks")
SETTINGS = (
    *ARCHITECTURE,
    "n_rbf",
    "domain_negatives",
    "local_scrambled",
    "batch_negatives",
    "kl_weight",
    "batch_sites",
    "lr",
    "weight_decay",
    "validation_fraction",
    "max_epochs",
    "patience",
    "random_state",
)


def corpus_structures(corpus_csv: Path, data_home: str | None) -> tuple[list, dict]:
    """The corpus' structures in list order, and its description (checked against the record beside it)."""
    raw = pd.read_csv(corpus_csv)
    digest = hashlib.sha256(raw.to_csv(index=False).encode()).hexdigest()
    record = json.loads(corpus_csv.with_name(corpus_csv.name.replace(".csv.gz", ".json")).read_text())
    if digest != record["sha256"]:
        raise SystemExit(f"{corpus_csv}: sha256 {digest} differs from its record {record['sha256']}")
    structures = []
    for name, rows in raw.groupby("dataset", sort=False)["row"]:
        items = load_dataset(name, data_home, download_if_missing=False)[0]
        structures += [items[i] for i in rows]
    described = {
        "file": corpus_csv.name,
        "n_structures": len(raw),
        "sha256": digest,
        "sets": {name: counts["in_corpus"] for name, counts in record["sets"].items()},
        "held_out": record["held_out"],
        "excluded_sets": record["excluded_sets"],
    }
    return structures, described


class Snapshots(PretrainCallback):
    """Save the encoder after every epoch as ``directory/epoch-NNN``, with the history up to that epoch."""

    def __init__(self, directory: Path, point_set_config: PointSetConfig):
        self.directory = directory
        self.point_set_config = point_set_config

    def on_epoch_end(self, model: DeepInfoMax, history: list[dict]) -> None:
        encoder = SiteNetEncoder(model.encoder.config)
        encoder.load_state_dict(model.encoder.state_dict())
        epoch = history[-1]["epoch"]
        PretrainedEncoder(encoder.eval(), self.point_set_config, {"history": history, "best_epoch": epoch}).save(
            self.directory / f"epoch-{epoch:03d}"
        )


def held_out_terms(featurizer: DeepInfoMaxFeaturizer) -> dict:
    """Held-out DIM terms at the first and the kept epoch, with chance (2 ln 2) for the DIM terms."""
    first, best = featurizer.history_[0], featurizer.history_[featurizer.best_epoch_ - 1]
    return {
        "chance": CHANCE,
        **{
            f"{when}_{term}": round(row[f"valid_{term}"], 4)
            for when, row in (("first", first), ("best", best))
            for term in TERMS
        },
    }


def describe(featurizer: DeepInfoMaxFeaturizer, corpus: dict, n_structures: int) -> dict:
    """The metadata saved with a pretrained encoder: its corpus, settings, epochs, held-out terms, time, machine."""
    seconds = sum(row["seconds"] for row in featurizer.history_)
    trained = round(n_structures * (1 - featurizer.validation_fraction))
    params = featurizer.get_params()
    return {
        "corpus": corpus,
        "settings": {k: params[k] for k in SETTINGS},
        "epochs": len(featurizer.history_),
        "best_epoch": featurizer.best_epoch_,
        "held_out": held_out_terms(featurizer),
        "training_seconds": round(seconds, 1),
        "crystals_per_second": round(trained * len(featurizer.history_) / seconds, 1),
        "machine": {
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
        },
        "command": " ".join(["python", *sys.argv]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("docs/results/pretraining_corpus.csv.gz"))
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--epochs", type=int, default=6, help="upper bound on epochs")
    parser.add_argument("--patience", type=int, default=10, help="early stopping on the held-out DIM loss")
    for name in ARCHITECTURE:
        default = DeepInfoMaxFeaturizer().get_params()[name]
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help=f"default: {default}")
    parser.add_argument("--snapshot-dir", type=Path, default=None, help="keep every epoch's encoder here")
    parser.add_argument("--cache-dir", default=None, help="point-set cache")
    parser.add_argument("--checkpoint-dir", required=True, help="resumable state, outside the repository")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    structures, corpus = corpus_structures(args.corpus, args.data_home)
    featurizer = DeepInfoMaxFeaturizer(
        max_epochs=args.epochs,
        patience=args.patience,
        **{name: getattr(args, name) for name in ARCHITECTURE},
        random_state=0,
        cache_dir=args.cache_dir,
        checkpoint_dir=args.checkpoint_dir,
        ignore_errors=True,
        verbose=True,
    )
    if args.snapshot_dir:
        point_sets = PointSetConfig(**{k: featurizer.get_params()[k] for k in POINT_SET})
        featurizer.set_params(callbacks=[Snapshots(args.snapshot_dir, point_sets)])
    featurizer.fit(structures)
    metadata = describe(featurizer, corpus, len(structures))
    # The shipped file must not carry this machine's folders or a training run's verbosity.
    featurizer.set_params(cache_dir=None, checkpoint_dir=None, verbose=False, ignore_errors=False, callbacks=None)
    featurizer.save(args.out, metadata=metadata)
    print(json.dumps(metadata, indent=1))


if __name__ == "__main__":
    main()
