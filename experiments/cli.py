"""Command line of the experiments: ``python -m experiments demo | study``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .demo import format_table, plot_table, run_demo
from .study import cli as study_cli


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's arguments) and run the demo or the study."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="the main job: the shipped encoder against Magpie and from-scratch training "
        "on the embedded mp_crysxpp_2k set (no training of the encoder)",
    )
    demo.add_argument("--dataset", default="mp_crysxpp_2k", help="data set to run on (default: the embedded one)")
    demo.add_argument("--target", default="formation_energy_per_atom")
    demo.add_argument("--limit", type=int, default=None, help="only the first LIMIT structures")
    demo.add_argument("--repeats", type=int, default=5, help="label subsets per size for the forests")
    demo.add_argument(
        "--finetune-samples", type=int, default=10_000, help="structures seen per fine-tuning run (at most 100 epochs)"
    )
    demo.add_argument(
        "--encoder",
        default="pretrained",
        help="a folder saved by DeepInfoMaxFeaturizer.save (default: the shipped encoder)",
    )
    demo.add_argument("--plot", default="dim-sklearn-demo.png", help="where to write the PNG of MAE against labels")
    demo.add_argument("--cache-dir", default=None)
    demo.add_argument("--data-home", default=None)
    study = sub.add_parser("study", help="the label-masking study (DIM vs baselines at 50-1,000 labels)")
    study_cli.add_arguments(study)
    args = parser.parse_args(argv)

    if args.command == "demo":
        table, info = run_demo(
            args.dataset,
            args.target,
            repeats=args.repeats,
            finetune_samples=args.finetune_samples,
            encoder=args.encoder,
            cache_dir=args.cache_dir,
            data_home=args.data_home,
            limit=args.limit,
        )
        print(format_table(table, info))
        print(f"plot: {plot_table(table, info, args.plot)}")
        return 0
    return study_cli.run(args, " ".join(["python -m experiments", *argv]))
