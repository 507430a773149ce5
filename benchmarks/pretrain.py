"""Deep InfoMax pretraining speed and memory on a real data set.

Point sets are built (or read from the cache) first and are not timed; then
``--epochs`` epochs of pretraining run and each epoch's crystals/s (training
structures / seconds of the training pass) is printed, with the peak resident
memory. The last line is a one-line summary.

    python benchmarks/pretrain.py [--dataset mp_cs419] [--limit N] [--epochs 3] [--threads 2]

``--dataset`` takes a comma-separated list (their structures are concatenated),
e.g. ``mp_cs419,flla,perov5,carbon24,matbench_phonons --limit 20000``.

``--nproc K`` runs the pretraining data-parallel in K processes (torchrun,
gloo on CPU; each rank builds or reads the point sets itself) and prints every
rank's peak memory. ``torchrun --standalone --nproc-per-node K
benchmarks/pretrain.py ...`` does the same.

``--stream`` measures the memory of pretraining from the on-disk cache: the
point sets are written to ``--cache-dir`` (or read from it), then a fresh
process that holds no structures pretrains on them, reading each batch from
the cache (the held-out 5% stay in memory), and reports its peak resident
memory; a second fresh process reads every point set into memory first and
pretrains the same way, for comparison. ``--max-batches B`` stops each epoch's training pass after B batches
(the held-out pass and everything kept per structure are complete), for a
memory figure without a full epoch.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

from dim_sklearn import PointSetCache, PointSetConfig, build_point_sets, load_dataset
from dim_sklearn.nn import DeepInfoMax, EncoderConfig, SiteNetEncoder
from dim_sklearn.pointsets import CachedPointSets, DistributedSiteBudgetBatchSampler, stream_point_sets
from dim_sklearn.pretrain import PretrainSettings, pretrain
from dim_sklearn.pretrain.distributed import all_gather_objects, init_from_env, rank_and_world


def _peak_mb() -> float:
    """Peak resident memory of this process image (VmHWM: Linux keeps ru_maxrss across exec, from the parent)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _FirstBatches(DistributedSiteBudgetBatchSampler):
    """The first ``limit`` batches of every training pass (on every rank alike)."""

    def __init__(self, *args, limit: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit = limit

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.limit)


def _pretrain(point_sets, args) -> tuple[list[dict], float, float]:
    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder(EncoderConfig()))
    settings = PretrainSettings(max_epochs=args.epochs, patience=args.epochs + 1, batch_sites=args.batch_sites)
    sampler = DistributedSiteBudgetBatchSampler
    if args.max_batches:
        sampler = functools.partial(_FirstBatches, limit=args.max_batches)
    start = time.perf_counter()
    before_mb = _peak_mb()
    history, _ = pretrain(model, point_sets, settings, random_state=0, device="cpu", batch_sampler=sampler)
    return history, time.perf_counter() - start, before_mb


def _run_streamed(store: str, args) -> None:
    """The pretraining half of ``--stream``, in a process of its own."""
    saved = np.load(store)
    point_sets = CachedPointSets(PointSetCache(str(saved["cache"])), saved["keys"].tolist(), saved["n_sites"])
    mode = "stream"
    if args.load_all:  # the comparison: every point set read into memory first, as without a cache
        point_sets, mode = list(point_sets), "in-memory"
    history, total_s, before_mb = _pretrain(point_sets, args)
    print(
        f"{mode:<13} {len(point_sets)} structures, {args.epochs} epoch(s)"
        + (f" of at most {args.max_batches} training batches" if args.max_batches else "")
        + f", {total_s:.0f} s, {torch.get_num_threads()} threads, held-out loss {history[-1]['valid_loss']:.4f}"
    )
    print(
        f"pretrain --stream ({mode}) {args.dataset} n={len(point_sets)}: peak {_peak_mb():.0f} MB "
        f"({before_mb:.0f} MB before pretraining; the pretraining process only)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mp_cs419")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-atoms", type=int, default=50)
    parser.add_argument("--batch-sites", type=int, default=PretrainSettings.batch_sites)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--nproc", type=int, default=1, help="data-parallel processes (torchrun, gloo)")
    parser.add_argument("--stream", action="store_true", help="pretrain from the cache in a fresh process")
    parser.add_argument("--max-batches", type=int, default=None, help="training batches per epoch at most")
    parser.add_argument("--store", default=None, help=argparse.SUPPRESS)  # the fresh processes of --stream
    parser.add_argument("--load-all", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from torch.distributed.run import parse_args, run

        # torch's launcher would take --nproc for its own --nproc-per-node: leave it (and its value) out
        own = [a for i, a in enumerate(sys.argv[1:]) if not (a.startswith("--nproc") or sys.argv[i] == "--nproc")]
        run(parse_args(["--standalone", f"--nproc-per-node={args.nproc}", __file__, *own]))
        return
    init_from_env("cpu")
    rank, world = rank_and_world()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.store:
        _run_streamed(args.store, args)
        return

    structures = [s for name in args.dataset.split(",") for s in load_dataset(name)[0]][: args.limit]
    config = PointSetConfig(max_atoms=args.max_atoms)
    with tempfile.TemporaryDirectory() as tmp:
        cache = PointSetCache(args.cache_dir or tmp)
        start = time.perf_counter()
        if args.stream:
            streamed, _ = stream_point_sets(structures, config, cache=cache, ignore_errors=True)
            print(
                f"data set      {args.dataset}: {len(streamed)} structures "
                f"({time.perf_counter() - start:.1f} s to featurise into {cache.directory}, not timed)",
                flush=True,
            )
            store = os.path.join(tmp, "store.npz")
            np.savez(store, keys=np.array(streamed.keys), n_sites=streamed.n_sites, cache=str(cache.directory))
            child = [sys.executable, __file__, "--store", store, *sys.argv[1:]]
            for extra in ([], ["--load-all"]):
                subprocess.run(child + extra, check=True)
            return
        point_sets = [p for p in build_point_sets(structures, config, cache=cache, ignore_errors=True) if p is not None]
        featurise_s = time.perf_counter() - start
    history, total_s, before_mb = _pretrain(point_sets, args)
    peaks = all_gather_objects(_peak_mb())
    if rank != 0:
        return

    rates = [row["crystals_per_second"] for row in history]
    ranks = f", {world} gloo processes" if world > 1 else ""
    print(
        f"data set      {args.dataset}: {len(point_sets)} structures ({featurise_s:.1f} s to featurise, not timed), "
        f"N = {args.max_atoms}, batch {args.batch_sites} sites, {torch.get_num_threads()} threads{ranks}"
    )
    for row in history:
        print(
            f"epoch {row['epoch']:2d}      {row['seconds']:6.1f} s  {row['crystals_per_second']:6.0f} crystals/s  "
            f"DIM loss {row['loss']:.4f}  held-out {row['valid_loss']:.4f}"
        )
    if world > 1:
        print(
            f"peak memory   {', '.join(f'{p:.0f}' for p in peaks)} MB (resident, per rank; {before_mb:.0f} MB "
            "before pretraining on rank 0)"
        )
    else:
        print(f"peak memory   {peaks[0]:.0f} MB (resident, whole process; {before_mb:.0f} MB before pretraining)")
    print(
        f"pretrain {args.dataset} n={len(point_sets)}{ranks}: {np.median(rates):.0f} crystals/s per epoch (median "
        f"of {len(rates)}), {total_s:.0f} s in all, peak {max(peaks):.0f} MB"
    )


if __name__ == "__main__":
    main()
