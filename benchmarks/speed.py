"""Training and inference speed of this tree against another commit, side by side in one run.

    python benchmarks/speed.py [--baseline COMMIT] [--dataset mp_crysxpp_2k] [--limit 600] [--threads 2]

The baseline commit is checked out in a temporary git worktree. Every
measurement runs in a fresh process per tree (the same interpreter and
packages, ``PYTHONPATH`` pointing at that tree's ``dim_sklearn``, the same
threads, data and seeds), the trees taking turns. Measured per tree:

- DIM pretraining: median crystals/s of epochs 2 to ``--epochs`` of
  ``pretrain`` (defaults of each tree), and the held-out DIM terms at the end;
- ``SiteNetRegressor`` fine-tuning from random weights: crystals/s of epochs
  2 to ``--finetune-epochs`` (training and validation passes);
- ``embed_point_sets`` (what ``transform`` runs once the point sets are built);
- the original Site-Net (``preset="sitenet"``, about 300k parameters) trained
  with 1,200-site batches on Matbench phonons fold 0, when that set is at hand
  (also compiled, where that tree's Site-Net has compiled pair blocks);
- FLOPs of one DIM training step per crystal (``torch.utils.flop_counter``) and
  the GFLOP/s they make at the measured speed, beside an fp32 matmul measured
  in the same process.

Where this tree has compiled pair blocks (``dim_sklearn.nn.compiled``), the
pretraining, fine-tuning and transform are measured a second time with
``compile=True`` (the first epoch, which compiles, is left out of the rate).
Prints one table, with the ratio of each figure to the baseline's.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- one tree, in its own process


def _matmul_gflops(torch, n: int, m: int, k: int, repeats: int = 30) -> float:
    a, b = torch.randn(n, k), torch.randn(k, m)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n * m * k * repeats / (time.perf_counter() - start) / 1e9


def _accepts(function, name: str) -> bool:
    return name in inspect.signature(function).parameters


def _pretraining(torch, point_sets, args, compile_mode) -> dict:
    from dim_sklearn.nn import DeepInfoMax, SiteNetEncoder
    from dim_sklearn.pretrain import PretrainSettings, pretrain

    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder())
    settings = PretrainSettings(max_epochs=args.epochs, patience=args.epochs + 1)
    extra = {} if compile_mode is None else {"compile": compile_mode}
    start = time.perf_counter()
    history, _ = pretrain(model, point_sets, settings, random_state=0, device="cpu", **extra)
    last = history[-1]
    return {
        "crystals_per_second": statistics.median(row["crystals_per_second"] for row in history[1:]),
        "seconds": time.perf_counter() - start,
        "valid_local_dim": last["valid_local_dim"],
        "valid_global_dim": last["valid_global_dim"],
    }


def _flops_per_crystal(torch, point_sets) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    import dim_sklearn
    from dim_sklearn.nn import DeepInfoMax, SiteNetEncoder

    # The point-set stage is a package; an older tree has a flat dim_sklearn/batching.py. Asked by file, not by
    # import: an editable install of this tree would otherwise lend the older one its dim_sklearn.pointsets.
    if (Path(dim_sklearn.__file__).parent / "pointsets").is_dir():
        from dim_sklearn.pointsets import SiteBudgetBatchSampler, collate_point_sets
    else:
        from dim_sklearn.batching import SiteBudgetBatchSampler, collate_point_sets

    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder())
    plan = SiteBudgetBatchSampler([p.n_sites for p in point_sets], 300, shuffle=False)._plan()
    total = crystals = 0
    for rows in plan[:10]:
        batch = collate_point_sets([point_sets[i] for i in rows])
        with FlopCounterMode(display=False) as counter:
            model(batch, generator=torch.Generator().manual_seed(0))["loss"].backward()
        total += counter.get_total_flops()
        crystals += batch.n_crystals
    return total / crystals


def _fine_tuning(torch, structures, y, args, compile_mode, **params) -> float:
    from dim_sklearn import SiteNetRegressor

    if compile_mode is not None:
        params["compile"] = compile_mode
    net = SiteNetRegressor(max_epochs=args.finetune_epochs, random_state=0, **params)
    net.fit(structures, y)
    return len(structures) / statistics.median(row["dur"] for row in net.history[1:])


def _transform(torch, point_sets, compile_mode) -> float:
    from dim_sklearn.featurizer import embed_point_sets
    from dim_sklearn.nn import SiteNetEncoder

    torch.manual_seed(0)
    encoder = SiteNetEncoder().eval()
    extra = {} if compile_mode is None else {"compile": compile_mode}
    embed_point_sets(encoder, point_sets, "cpu", **extra)  # warm-up (and compiling)
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        embed_point_sets(encoder, point_sets, "cpu", **extra)
        seconds.append(time.perf_counter() - start)
    return len(point_sets) / sorted(seconds)[1]


def worker(args) -> None:
    """Measure the ``dim_sklearn`` on ``sys.path`` and print one JSON line."""
    import numpy as np
    import torch

    from dim_sklearn import build_point_sets, load_dataset
    from dim_sklearn.featurizer import embed_point_sets
    from dim_sklearn.pretrain import pretrain

    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    modes = [None]
    if _accepts(pretrain, "compile"):
        modes = [False, True]
    structures, targets = load_dataset(args.dataset)
    structures = structures[: args.limit]
    y = targets[args.target].to_numpy(dtype=float)[: args.limit]
    built = build_point_sets(structures, ignore_errors=True)
    point_sets = [p for p in built if p is not None]
    usable = [i for i, p in enumerate(built) if p is not None]
    result: dict = {
        "threads": torch.get_num_threads(),
        "matmul_1024": _matmul_gflops(torch, 1024, 1024, 1024),
        "matmul_4096x64": _matmul_gflops(torch, 4096, 64, 64, repeats=300),
        "flops_per_crystal": _flops_per_crystal(torch, point_sets),
    }
    for mode in modes:
        name = {None: "default", False: "eager", True: "compiled"}[mode]
        result[f"pretrain_{name}"] = _pretraining(torch, point_sets, args, mode)
        fine_tune_mode = mode if mode is None or _accepts_regressor_compile() else None
        result[f"finetune_{name}"] = _fine_tuning(
            torch, [structures[i] for i in usable], y[usable], args, fine_tune_mode
        )
        transform_mode = mode if _accepts(embed_point_sets, "compile") else None
        result[f"transform_{name}"] = _transform(torch, point_sets, transform_mode)
    if args.sitenet:
        try:
            phonons, frame = load_dataset("matbench_phonons")
        except Exception:  # the set is not at hand: leave the figure out
            phonons = None
        if phonons is not None:
            from sklearn.model_selection import KFold

            train, _ = next(KFold(5, shuffle=True, random_state=18012019).split(np.arange(len(phonons))))
            sitenet_data = ([phonons[i] for i in train], frame.iloc[:, 0].to_numpy(dtype=float)[train])
            result["sitenet"] = _fine_tuning(torch, *sitenet_data, args, None, preset="sitenet", batch_sites=1200)
            if _sitenet_compiles():
                result["sitenet_compiled"] = _fine_tuning(
                    torch, *sitenet_data, args, True, preset="sitenet", batch_sites=1200
                )
    print(json.dumps(result))


def _sitenet_compiles() -> bool:
    """Whether the tree's original Site-Net has compiled pair blocks."""
    from dim_sklearn.nn import SiteNet

    return any(hasattr(module, "compiled_pairs") for module in SiteNet().modules())


def _accepts_regressor_compile() -> bool:
    from dim_sklearn import SiteNetRegressor

    return _accepts(SiteNetRegressor.__init__, "compile")


# ---------------------------------------------------------------------------- the comparison


def _run_tree(tree: Path, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(args.threads))
    command = [sys.executable, __file__, "--worker", *sys.argv[1:]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode:
        raise SystemExit(f"the measurement of {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _describe(revision: str) -> str:
    """``revision`` as its short hash and subject."""
    log = ["git", "-C", str(REPO), "log", "-1", "--format=%h %s", revision]
    return subprocess.run(log, capture_output=True, text=True, check=True).stdout.strip()[:90]


def _default(result: dict) -> str:
    """The name of a tree's measurement with its default (eager) code: "eager", or "default" for older trees."""
    return "eager" if "pretrain_eager" in result else "default"


def _table(base: dict, this: dict) -> list[str]:
    compiled = "pretrain_compiled" in this
    lines = [
        f"{'':48s}{'baseline':>10s}{'this tree':>10s}{'ratio':>8s}" + (f"{'compiled':>10s}{'ratio':>8s}" * compiled)
    ]

    def row(label: str, before: float, after: float, after_compiled: float | None = None, digits: int = 0) -> None:
        line = f"{label:48s}{before:10.{digits}f}{after:10.{digits}f}{after / before:7.2f}x"
        if after_compiled is not None:
            line += f"{after_compiled:10.{digits}f}{after_compiled / before:7.2f}x"
        lines.append(line)

    pre_base, pre_this = base[f"pretrain_{_default(base)}"], this[f"pretrain_{_default(this)}"]
    pre_compiled = this.get("pretrain_compiled", {})
    row("DIM pretraining, crystals/s", *(r.get("crystals_per_second") for r in (pre_base, pre_this, pre_compiled)))
    for term in ("valid_local_dim", "valid_global_dim"):
        row(f"  held-out {term[6:]} at the end", *(r.get(term) for r in (pre_base, pre_this, pre_compiled)), digits=4)
    for key, label in (("finetune", "fine-tuning, crystals/s"), ("transform", "transform (encoder), crystals/s")):
        row(label, base[f"{key}_{_default(base)}"], this[f"{key}_{_default(this)}"], this.get(f"{key}_compiled"))
    if "sitenet" in base and "sitenet" in this:
        row(
            "original Site-Net training (phonons), crystals/s",
            base["sitenet"],
            this["sitenet"],
            this.get("sitenet_compiled"),
        )
    row(
        "DIM training step, MFLOP per crystal",
        base["flops_per_crystal"] / 1e6,
        this["flops_per_crystal"] / 1e6,
        digits=1,
    )
    for result, name in ((base, "baseline"), (this, "this tree")):
        rate = _pretraining_rate(result)
        achieved = result["flops_per_crystal"] * rate / 1e9
        lines.append(
            f"{name}: DIM pretraining at {achieved:.1f} GFLOP/s ({rate:.0f} crystals/s), "
            f"{100 * achieved / result['matmul_1024']:.0f}% of the fp32 matmul rate measured beside it "
            f"({result['matmul_1024']:.0f} GFLOP/s at 1024^3, {result['matmul_4096x64']:.0f} at 4096x64x64; "
            f"{result['threads']} threads)"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="commit, branch or tag to compare this tree with")
    parser.add_argument("--dataset", default="mp_crysxpp_2k")
    parser.add_argument("--target", default="formation_energy_per_atom", help="fine-tuning target column")
    parser.add_argument("--limit", type=int, default=600, help="structures of the data set to use")
    parser.add_argument("--epochs", type=int, default=3, help="pretraining epochs (the first is not counted)")
    parser.add_argument("--finetune-epochs", type=int, default=4, help="fine-tuning epochs (the first not counted)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every measurement")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per tree (the best is kept)")
    parser.add_argument("--no-sitenet", dest="sitenet", action="store_false", help="skip the original Site-Net")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline), args.baseline], check=True
        )
        try:
            runs: dict[str, list[dict]] = {"baseline": [], "this": []}
            for _ in range(args.repeats):
                for name, tree in (("baseline", baseline), ("this", REPO)):
                    runs[name].append(_run_tree(tree, args))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], check=True)
    best = {name: max(results, key=_pretraining_rate) for name, results in runs.items()}
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout
    print(f"baseline:  {_describe(args.baseline)}")
    print(f"this tree: {_describe('HEAD')}" + (" (with uncommitted changes)" if dirty.strip() else ""))
    print(
        f"data: {args.dataset}, first {args.limit} structures; {args.epochs} pretraining epochs, {args.threads} threads"
    )
    print("\n".join(_table(best["baseline"], best["this"])))


def _pretraining_rate(result: dict) -> float:
    return max(value["crystals_per_second"] for key, value in result.items() if key.startswith("pretrain_"))


if __name__ == "__main__":
    main()
