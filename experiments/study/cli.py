"""Command line of the study, shared by ``python -m experiments study`` and matbench_submission/label_masking.py."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..protocol import FULL, QUICK, TARGETS, get_target
from .ensembles import ensemble_lines, seed_ensemble_lines
from .features import AUTO, FOUNDATION, HAND_CRAFTED, SHIPPED, UNIONS, VARIANTS
from .headline import headline, headline_lines, headline_sentence, refresh_block
from .options import option_lines
from .report import write_report
from .runner import OPT_IN, run_study

DEFAULT_WORK = Path.home() / ".cache" / "dim-sklearn"
DEFAULT_RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
"""The study's published results: docs/results of the checkout, wherever the command runs from."""
PARTS = ("representation", "transfer", "ensemble", "seeds", "investigation")
FEATURES = ("DIM", "untrained", SHIPPED, AUTO, *OPT_IN, *HAND_CRAFTED, *FOUNDATION, *UNIONS)
"""The names ``--features`` accepts (with the investigation's variants): feature sets and fine-tuning starts.
The paper's raw-distance untrained encoder has a comma in its name: it runs when ``--features`` is not given."""


def add_arguments(parser: argparse.ArgumentParser, default_results: str | Path = DEFAULT_RESULTS) -> None:
    """The study's options on ``parser``; ``--results-dir`` defaults to ``default_results``."""
    names = ", ".join(t.name for t in TARGETS)
    parser.add_argument(
        "--quick", action="store_true", help="one target, two sizes, two seeds, tiny budgets (checks the machinery)"
    )
    parser.add_argument("--targets", default=None, help=f"comma-separated subset of: {names}")
    parser.add_argument("--labels", default=None, help="comma-separated label counts (default 50,100,250,1000)")
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        default=None,
        help=f"DIM pretraining epochs (default {FULL.pretrain_epochs}; the encoder's name records it)",
    )
    parser.add_argument(
        "--finetune-samples",
        type=int,
        default=None,
        help=f"fine-tuning budget in structures seen, epochs = samples / labels "
        f"(default {FULL.finetune_samples:,}, at most {FULL.finetune_max_epochs} epochs)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help=f"fine-tuning seeds per label count, seeds 0 to N-1 (default {FULL.seeds})",
    )
    parser.add_argument(
        "--features",
        default=None,
        help="comma-separated feature sets (and fine-tuning starts) to run, e.g. "
        "'DIM shipped,Magpie + DIM shipped,CHGNet'; default: all. Only what they need is "
        "computed: the target's own DIM encoder is not pretrained unless DIM is asked for",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="representation (scikit-learn models), transfer (fine-tuning), ensemble (SiteNetEnsemble from the "
        "shipped encoder and from scratch), seeds (the ensemble part's seed ensembles only), investigation "
        "(pretraining variants); comma-separated",
    )
    parser.add_argument(
        "--results-dir",
        default=None,
        help=f"CSV, JSON, markdown and plots (default {default_results}; with --quick "
        "<work-dir>/results, so a quick run never mixes into the study's results)",
    )
    parser.set_defaults(default_results=default_results)
    parser.add_argument(
        "--work-dir",
        default=None,
        help="encoders and feature caches (default ~/.cache/dim-sklearn/label-masking[-quick])",
    )
    parser.add_argument("--cache-dir", default=None, help="point-set cache (default: <work-dir>/point-sets)")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--report-only", action="store_true", help="regenerate the markdown and plots from the CSV")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace, command: str) -> int:
    """Run what ``args`` (parsed by ``add_arguments``) ask; ``command`` is recorded with the results."""
    work = (
        Path(args.work_dir)
        if args.work_dir
        else DEFAULT_WORK / ("label-masking-quick" if args.quick else "label-masking")
    )
    results = Path(args.results_dir or (work / "results" if args.quick else args.default_results))
    if args.report_only:
        meta_path = results / "label_masking.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        page = write_report(results / "label_masking.csv", meta, results)
        print(page or f"no label_masking.csv in {results}")
        if page:
            _quote_headline(results)
        return 0 if page else 1
    budget = QUICK if args.quick else FULL
    if args.targets:
        try:
            targets = tuple(get_target(name) for name in args.targets.split(","))
        except ValueError as error:
            raise SystemExit(str(error)) from None
        budget = dataclasses.replace(budget, targets=targets)
    if args.labels:
        budget = dataclasses.replace(budget, label_counts=tuple(int(n) for n in args.labels.split(",")))
    if args.pretrain_epochs:
        budget = dataclasses.replace(budget, pretrain_epochs=args.pretrain_epochs)
    if args.finetune_samples:
        budget = dataclasses.replace(budget, finetune_samples=args.finetune_samples)
    if args.seeds is not None:
        if args.seeds < 1:
            raise SystemExit(f"--seeds must be at least 1, got {args.seeds}")
        budget = dataclasses.replace(budget, seeds=args.seeds)
    parts = tuple(args.parts.split(","))
    if not set(parts) <= set(PARTS):
        raise SystemExit(f"unknown parts {parts}")
    features = tuple(args.features.split(",")) if args.features else None
    unknown = sorted(set(features or ()) - {*FEATURES, *(variant.name for variant in VARIANTS)})
    if unknown:
        raise SystemExit(f"unknown features {unknown}; known: {', '.join(FEATURES)}")
    path = run_study(
        budget,
        results,
        work,
        args.cache_dir or str(work / "point-sets"),
        args.data_home,
        parts,
        verbose=not args.quiet,
        command=command,
        features=features,
    )
    print(f"results in {path} and {results / 'label_masking.md'}")
    _quote_headline(results)
    return 0


def _quote_headline(results: Path) -> None:
    """Refresh the headline that the user guide and the README quote, when these are the study's own results."""
    if Path(results).resolve() != DEFAULT_RESULTS:
        return
    frame = pd.read_csv(DEFAULT_RESULTS / "label_masking.csv")
    table = headline(frame)
    refresh_block(DEFAULT_RESULTS.parent / "which-features.md", "headline", headline_lines(table))
    refresh_block(DEFAULT_RESULTS.parents[1] / "README.md", "headline", [headline_sentence(table)])
    for page in ("fine-tuning.md", "which-features.md"):
        refresh_block(DEFAULT_RESULTS.parent / page, "ensembles", ensemble_lines(frame))
    refresh_block(DEFAULT_RESULTS.parent / "fine-tuning.md", "options", option_lines(frame))
    refresh_block(DEFAULT_RESULTS.parent / "fine-tuning.md", "seed ensembles", seed_ensemble_lines(frame))


def main(
    argv: Sequence[str] | None = None,
    default_results: str | Path = DEFAULT_RESULTS,
    prog: str = "python -m experiments study",
) -> int:
    """Parse ``argv`` (default: the process's arguments) and run the study."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_arguments(parser, default_results)
    args = parser.parse_args(argv)
    command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
    return run(args, command)
