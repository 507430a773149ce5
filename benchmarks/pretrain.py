"""Deep InfoMax pretraining speed and memory on a real data set.

Point sets are built (or read from the cache) first and are not timed; then
``--epochs`` epochs of pretraining run and each epoch's crystals/s (training
structures / seconds of the training pass) is printed, with the peak resident
memory. The last line is a one-line summary.

    python benchmarks/pretrain.py [--dataset mp_cs419] [--limit N] [--epochs 3] [--threads 2]

``--dataset`` takes a comma-separated list (their structures are concatenated),
e.g. ``mp_cs419,flla,perov5,carbon24,matbench_phonons --limit 20000``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import warnings

import numpy as np
import torch

from dim_sklearn import PointSetCache, PointSetConfig, build_point_sets, load_dataset
from dim_sklearn.nn import DeepInfoMax, EncoderConfig, SiteNetEncoder
from dim_sklearn.pretrain import PretrainSettings, pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mp_cs419")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-atoms", type=int, default=50)
    parser.add_argument("--batch-sites", type=int, default=PretrainSettings.batch_sites)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)

    structures = [s for name in args.dataset.split(",") for s in load_dataset(name)[0]][: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        cache = PointSetCache(args.cache_dir or tmp)
        start = time.perf_counter()
        point_sets = [p for p in build_point_sets(structures, PointSetConfig(max_atoms=args.max_atoms), cache=cache,
                                                  ignore_errors=True) if p is not None]
        featurise_s = time.perf_counter() - start
    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder(EncoderConfig()))
    settings = PretrainSettings(max_epochs=args.epochs, patience=args.epochs + 1, batch_sites=args.batch_sites)
    start = time.perf_counter()
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    history, _ = pretrain(model, point_sets, settings, random_state=0, device="cpu")
    total_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rates = [row["crystals_per_second"] for row in history]
    print(f"data set      {args.dataset}: {len(point_sets)} structures ({featurise_s:.1f} s to featurise, not timed), "
          f"N = {args.max_atoms}, batch {args.batch_sites} sites, {torch.get_num_threads()} threads")
    for row in history:
        print(f"epoch {row['epoch']:2d}      {row['seconds']:6.1f} s  {row['crystals_per_second']:6.0f} crystals/s  "
              f"DIM loss {row['loss']:.4f}  held-out {row['valid_loss']:.4f}")
    print(f"peak memory   {peak_mb:.0f} MB (resident, whole process; {before_mb:.0f} MB before pretraining)")
    print(f"pretrain {args.dataset} n={len(point_sets)}: {np.median(rates):.0f} crystals/s per epoch (median of "
          f"{len(rates)}), {total_s:.0f} s in all, peak {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
