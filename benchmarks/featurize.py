"""Point-set featurisation speed on a real data set, on one core, or in several processes.

Prints structures/s for a cold pass (building every point set and writing the
on-disk cache) and a warm pass (reading the cache back), and the peak resident
memory. The last line is a one-line summary.

    python benchmarks/featurize.py [--dataset mp_cs419] [--max-atoms 50] [--limit N] [--n-jobs K]

With ``--n-jobs K`` (K > 1) the cold pass runs twice, in this process and in K
joblib (loky) processes, each into a fresh cache, and the speed-up is printed;
the worker processes are started before the clock starts.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

from dim_sklearn import PointSetCache, PointSetConfig, build_point_sets, load_dataset  # noqa: E402


def _cold(structures, config, n_jobs=None):
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        point_sets = build_point_sets(
            structures, config, cache=PointSetCache(cache_dir), ignore_errors=True, n_jobs=n_jobs
        )
        return point_sets, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mp_cs419")
    parser.add_argument("--max-atoms", type=int, default=50)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--n-jobs", type=int, default=1, help="also time the cold pass in this many processes")
    args = parser.parse_args()
    if args.n_jobs == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    warnings.simplefilter("ignore")

    structures, _ = load_dataset(args.dataset)
    structures = structures[: args.limit]
    config = PointSetConfig(max_atoms=args.max_atoms)
    build_point_sets(structures[:1], config)  # import and table set-up, not per-structure work
    n = len(structures)

    if args.n_jobs != 1:
        build_point_sets(structures[: 4 * os.cpu_count()], config, n_jobs=args.n_jobs)  # start the workers
        serial, serial_s = _cold(structures, config)
        parallel, parallel_s = _cold(structures, config, args.n_jobs)
        assert [p is None for p in parallel] == [p is None for p in serial]
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"data set      {args.dataset}: {n} structures, {sum(p is None for p in serial)} failed, "
            f"N = {args.max_atoms}, {os.cpu_count()} cores"
        )
        print(f"cold, 1 process    {serial_s:7.2f} s  {n / serial_s:8.0f} structures/s  (build + write cache)")
        print(f"cold, n_jobs={args.n_jobs:<5} {parallel_s:7.2f} s  {n / parallel_s:8.0f} structures/s")
        print(f"peak memory   {peak_mb:7.0f} MB (resident, this process)")
        print(
            f"featurize {args.dataset} n={n} N={args.max_atoms}: cold {n / serial_s:.0f}/s in 1 process, "
            f"{n / parallel_s:.0f}/s with n_jobs={args.n_jobs} ({serial_s / parallel_s:.2f}x)"
        )
        return

    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        cold = build_point_sets(structures, config, cache=PointSetCache(cache_dir), ignore_errors=True)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        warm = build_point_sets(structures, config, cache=PointSetCache(cache_dir), ignore_errors=True)
        warm_s = time.perf_counter() - start
    failed = sum(p is None for p in cold)
    assert [p is None for p in warm] == [p is None for p in cold]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"data set      {args.dataset}: {n} structures, {failed} failed, N = {args.max_atoms}, 1 core")
    print(f"cold          {cold_s:7.2f} s  {n / cold_s:8.0f} structures/s  (build + write cache)")
    print(f"warm          {warm_s:7.2f} s  {n / warm_s:8.0f} structures/s  (read cache)")
    print(f"peak memory   {peak_mb:7.0f} MB (resident, whole process)")
    print(
        f"featurize {args.dataset} n={n} N={args.max_atoms}: cold {n / cold_s:.0f}/s, "
        f"warm {n / warm_s:.0f}/s ({cold_s / warm_s:.0f}x), peak {peak_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
