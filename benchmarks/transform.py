"""DeepInfoMaxFeaturizer.transform speed and memory on a real data set.

The encoder is untrained (speed does not depend on the weights). Point sets are
cached on disk by a first, untimed pass; then ``transform`` is timed with the
warm cache (hashing, reading the cache and the batched encoder), and the
encoder alone on in-memory point sets. Prints crystals/s and peak memory; the
last line is a one-line summary.

    python benchmarks/transform.py [--dataset mp_cs419] [--limit N] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import warnings

import torch

from dim_sklearn import DeepInfoMaxFeaturizer, PointSetCache, build_point_sets, load_dataset
from dim_sklearn.featurizer import embed_point_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mp_cs419", help="comma-separated names; structures are concatenated")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)

    structures = [s for name in args.dataset.split(",") for s in load_dataset(name)[0]][: args.limit]
    n = len(structures)
    with tempfile.TemporaryDirectory() as cache_dir:
        featurizer = DeepInfoMaxFeaturizer(max_epochs=0, random_state=0, cache_dir=cache_dir, ignore_errors=True)
        featurizer.fit(structures[:1])
        featurizer.transform(structures)  # fills the cache
        start = time.perf_counter()
        featurizer.transform(structures)
        warm_s = time.perf_counter() - start
        point_sets = [p for p in build_point_sets(structures, cache=PointSetCache(cache_dir), ignore_errors=True) if p]
    embed_point_sets(featurizer.encoder_.module, point_sets[:50])
    start = time.perf_counter()
    embed_point_sets(featurizer.encoder_.module, point_sets)
    encoder_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"data set      {args.dataset}: {n} structures, {torch.get_num_threads()} threads")
    print(f"transform     {warm_s:6.2f} s  {n / warm_s:7.0f} crystals/s  (warm point-set cache: hash, read, encode)")
    print(f"encoder only  {encoder_s:6.2f} s  {len(point_sets) / encoder_s:7.0f} crystals/s  (point sets in memory)")
    print(f"peak memory   {peak_mb:.0f} MB (resident, whole process)")
    print(
        f"transform {args.dataset} n={n}: {n / warm_s:.0f} crystals/s from the cache, "
        f"{len(point_sets) / encoder_s:.0f} crystals/s encoder only, peak {peak_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
