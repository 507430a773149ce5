"""The ``dim-sklearn`` command: ``datasets``, ``featurize``, ``pointsets`` and ``pretrain`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np

from ._version import __version__
from .datasets import list_datasets, load_dataset
from .exceptions import WriteError
from .featurizer import DeepInfoMaxFeaturizer
from .pointsets import PointSetCache, PointSetConfig, build_point_sets, stream_point_sets
from .pointsets.elements import SITE_PROPERTIES
from .pretrain.distributed import barrier, init_from_env, launch, rank_and_world
from .structure_files import Entry, expand_paths, read_entries, write_features


def _stats(values: Sequence[float]) -> str:
    array = np.asarray(values)
    return f"min {array.min():g}, median {np.median(array):g}, max {array.max():g}"


def pointsets_report(
    name: str,
    *,
    max_atoms: int = 50,
    limit: int | None = None,
    cache_dir: str | None = None,
    data_home: str | None = None,
    verbose: bool = False,
) -> str:
    """Featurise a real data set into point sets and describe what came out."""
    t0 = time.perf_counter()
    structures, targets = load_dataset(name, data_home)
    structures = structures[:limit]
    t1 = time.perf_counter()
    config = PointSetConfig(max_atoms=max_atoms)
    cache = PointSetCache(cache_dir) if cache_dir else None
    point_sets, errors = build_point_sets(structures, config, cache=cache, return_errors=True, verbose=verbose)
    t2 = time.perf_counter()

    ok = [p for p in point_sets if p is not None]
    failed = [(i, e) for i, e in enumerate(errors) if e is not None]
    lines = [
        f"data set         {name}: {len(structures)} structures (loaded in {t1 - t0:.1f} s), "
        f"targets: {', '.join(targets.columns)}",
        f"point sets       {len(ok)} built, {len(failed)} failed, in {t2 - t1:.1f} s "
        f"({len(structures) / max(t2 - t1, 1e-9):.0f} structures/s), supercells of at most {max_atoms} atoms",
    ]
    for _, error in failed[:5]:
        lines.append(f"  failed         {error}")
    if ok:
        features = np.concatenate([p.site_features for p in ok])
        images, counts = np.unique([p.n_images for p in ok], return_counts=True)
        lines += [
            f"unique sites     {_stats([p.n_sites for p in ok])}",
            f"supercell sites  {_stats([p.n_keys for p in ok])}",
            "images per cell  " + ", ".join(f"{i}x: {c}" for i, c in zip(images, counts)),
            f"nearest neighbour {_stats([_nearest(p) for p in ok])} A",
            "site features (scaled, mean +- std over all sites):",
        ]
        for k, prop in enumerate(SITE_PROPERTIES):
            lines.append(f"  {prop:<22} {features[:, k].mean():8.3f} +- {features[:, k].std():.3f}")
        first, example = next((i, p) for i, p in enumerate(point_sets) if p is not None)
        lines += [
            f"example          structure {first} ({structures[first].composition.reduced_formula}): "
            f"{example.n_sites} unique sites, {example.n_keys} supercell sites, "
            f"supercell matrix {example.supercell_matrix.tolist()}",
            f"  site 0 features {np.round(example.site_features[0].astype(float), 3).tolist()}",
            f"  site 0 nearest  {np.round(np.sort(example.distances[0].astype(float))[1:6], 3).tolist()} A",
        ]
    return "\n".join(lines)


def _nearest(point_set) -> float:
    d = point_set.distances.copy()
    d[np.arange(point_set.n_sites), point_set.self_key] = np.inf
    return float(d.min()) if np.isfinite(d).any() else float("nan")


def _featurizer(encoder: str | None) -> DeepInfoMaxFeaturizer:
    """The featurizer saved in the folder ``encoder``, else the shipped pretrained one."""
    return DeepInfoMaxFeaturizer.load(encoder) if encoder is not None else DeepInfoMaxFeaturizer.from_pretrained()


def _drop_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` or ``option=VALUE`` (torch's launcher would take it for its own)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip or arg.startswith(option + "="):
            skip = False
        elif arg == option:
            skip = True
        else:
            out.append(arg)
    return out


DESCRIPTION = """\
Deep InfoMax pretraining of Site-Net crystal encoders.

  dim-sklearn datasets                            the data sets and whether each is at hand
  dim-sklearn featurize cifs/ -o features.csv     crystal vectors of your structures, one CSV row each
  dim-sklearn pretrain cifs/ my-encoder           pretrain an encoder on your unlabelled structures
  dim-sklearn featurize cifs/ -o features.csv --encoder my-encoder
  dim-sklearn pointsets flla                      point sets of a data set, summarised

'dim-sklearn COMMAND --help' describes each command."""

_INPUTS_HELP = (
    "a .cif file, a folder of *.cif files, a .json/.json.gz file in the data-set layout, or the name of a data set "
    "(see 'dim-sklearn datasets'); an existing file or folder is read as such"
)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``dim-sklearn`` parser and its subcommands' parsers by name."""
    parser = argparse.ArgumentParser(
        prog="dim-sklearn", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("datasets", help="list the data sets and whether they are at hand")
    feat = sub.add_parser(
        "featurize",
        help="crystal vectors of CIF files, folders of CIFs or JSON structure files, one CSV row per structure",
        description="Write the crystal vectors of structure files to a CSV, one row per structure in input order; "
        "a structure that cannot be read or featurised keeps its row, with empty features and the reason.",
    )
    feat.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a .cif file, a folder of *.cif files, or a .json/.json.gz file in the data-set layout",
    )
    feat.add_argument("-o", "--output", required=True, help="CSV to write: id, the features, reason")
    feat.add_argument(
        "--encoder",
        default=None,
        help="folder written by 'dim-sklearn pretrain' or DeepInfoMaxFeaturizer.save "
        "(default: the shipped pretrained encoder)",
    )
    feat.add_argument("--cache-dir", default=None, help="on-disk point-set cache (reused across runs)")
    feat.add_argument(
        "--chunk-size", type=int, default=256, help="structures read and featurised at a time (default: 256)"
    )
    feat.add_argument("--n-jobs", type=int, default=None, help="processes building point sets (-1: one per core)")

    points = sub.add_parser("pointsets", help="turn a data set into Site-Net point sets and summarise them")
    points.add_argument("name", help="the data set (see 'dim-sklearn datasets')")
    points.add_argument("--max-atoms", type=int, default=50, help="largest supercell, in atoms (default: 50)")
    points.add_argument("--limit", type=int, default=None, help="only the first LIMIT structures")
    points.add_argument("--cache-dir", default=None, help="on-disk point-set cache (reused across runs)")
    points.add_argument("--data-home", default=None, help=_DATA_HOME_HELP)

    pre = sub.add_parser(
        "pretrain",
        help="pretrain a DIM encoder on unlabelled structures (your CIFs, JSON files or a data set) and save it",
        description="Pretrain a Site-Net encoder with Deep InfoMax on unlabelled structures and save it to OUT. "
        "Every structure that cannot be read or featurised is left out and listed, with the reason, on stderr.",
    )
    pre.add_argument("inputs", nargs="+", metavar="INPUT", help=_INPUTS_HELP)
    pre.add_argument("out", metavar="OUT", help="folder to save the encoder to (read by 'featurize --encoder')")
    pre.add_argument("--max-epochs", type=int, default=100, help="upper bound on training epochs (default: 100)")
    pre.add_argument(
        "--patience",
        type=int,
        default=10,
        help="stop after this many epochs without a lower held-out DIM loss; the best epoch is kept (default: 10)",
    )
    pre.add_argument(
        "--random-state",
        type=int,
        default=0,
        help="seed of initialisation and training: same seed, same encoder (default: 0)",
    )
    pre.add_argument(
        "--cache-dir", default=None, help="on-disk point-set cache; training then streams the point sets from it"
    )
    pre.add_argument(
        "--checkpoint-dir",
        default=None,
        help="write the training state after every epoch; rerunning the same command resumes from it",
    )
    pre.add_argument("--data-home", default=None, help=_DATA_HOME_HELP)
    pre.add_argument("--limit", type=int, default=None, help="only the first LIMIT structures")
    pre.add_argument("--n-jobs", type=int, default=None, help="processes building point sets (-1: one per core)")
    pre.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        help="data-parallel training processes on this machine (torchrun; one per GPU, or gloo on CPU)",
    )
    return parser, {"featurize": feat, "pointsets": points, "pretrain": pre}


_DATA_HOME_HELP = "folder of the data-set files (default: $DIM_SKLEARN_DATA, then $MATMINER_DATA)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dim-sklearn`` with the arguments ``argv`` (default: the command line); the exit status.

    A file that cannot be written (the CSV, the saved encoder, a checkpoint or
    a cache entry) ends the command with status 1 and one line on stderr naming
    the file and the cause; nothing half-written is left in its place.
    """
    parser, commands = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        return _run(args, argv, commands)
    except WriteError as exc:
        print(f"dim-sklearn {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, argv: list[str], commands: dict[str, argparse.ArgumentParser]) -> int:
    """The command ``args`` names; its exit status."""
    if args.command == "datasets":
        print(list_datasets().drop(columns="description").to_string())
    elif args.command == "featurize":
        try:  # a missing or unusable encoder, a missing path, an unsupported file: usage errors (status 2)
            featurizer = _featurizer(args.encoder)
            entries = expand_paths(args.paths)
        except (FileNotFoundError, ValueError) as exc:
            commands["featurize"].error(str(exc))
        featurizer.set_params(cache_dir=args.cache_dir, n_jobs=args.n_jobs)
        n_rows, n_failed = write_features(entries, featurizer, args.output, chunk_size=args.chunk_size)
        print(f"wrote {n_rows} rows to {args.output} ({n_failed} with a reason instead of features)", file=sys.stderr)
    elif args.command == "pointsets":
        print(
            pointsets_report(
                args.name,
                max_atoms=args.max_atoms,
                limit=args.limit,
                cache_dir=args.cache_dir,
                data_home=args.data_home,
                verbose=True,
            )
        )
    elif args.command == "pretrain":
        if args.nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:  # start the ranks, each runs this command
            launch(
                "dim_sklearn.pretrain",
                _drop_option(argv[argv.index("pretrain") + 1 :], "--nproc-per-node"),
                args.nproc_per_node,
            )
            return 0
        return _pretrain(args, argv, commands["pretrain"])
    return 0


def _pretrain(args: argparse.Namespace, argv: list[str], parser: argparse.ArgumentParser) -> int:
    """``dim-sklearn pretrain`` in this process (one rank of a data-parallel run, or the only one)."""
    device = init_from_env()
    rank = rank_and_world()[0]
    try:  # a missing path, an unknown data set or an unsupported file: usage errors (status 2)
        entries = input_entries(args.inputs, args.data_home)[: args.limit]
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    structures, labels, skipped = read_entries(entries)
    featurizer = DeepInfoMaxFeaturizer(
        max_epochs=args.max_epochs,
        patience=args.patience,
        random_state=args.random_state,
        cache_dir=args.cache_dir,
        checkpoint_dir=args.checkpoint_dir,
        ignore_errors=True,
        verbose=rank == 0,
        device=str(device),
        n_jobs=args.n_jobs,
    )
    if args.cache_dir and rank_and_world()[1] > 1:  # rank 0 fills the cache, the others then read it
        if rank == 0:
            stream_point_sets(
                structures,
                featurizer._point_set_config(),
                cache=PointSetCache(args.cache_dir),
                ignore_errors=True,
                verbose=True,
                n_jobs=args.n_jobs,
            )
        barrier()
    with warnings.catch_warnings():  # the structures left out are listed below, each with its reason
        warnings.filterwarnings("ignore", message=r"\d+ of \d+ structures could not be featurised")
        try:
            featurizer.fit(structures)
        except ValueError as exc:  # too few usable structures for a training and a held-out part
            parser.error(f"{exc} ({_skipped_summary(len(entries), skipped, featurizer, labels)})")
    if rank == 0:
        skipped += [(labels[i], reason) for i, reason in featurizer.skipped_]
        if skipped:
            print(f"skipped {len(skipped)} of {len(entries)} structures:", file=sys.stderr)
            for label, reason in skipped:
                print(f"  {label}: {reason}", file=sys.stderr)
        metadata = {
            "corpus": {
                "inputs": list(args.inputs),
                "n_structures": len(entries) - len(skipped),
                "n_skipped": len(skipped),
            },
            "command": shlex.join(["dim-sklearn", *argv]),
        }
        featurizer.save(args.out, metadata=metadata)
        print(
            f"pretrained on {len(entries) - len(skipped)} structures; saved to {args.out} "
            f"(best held-out epoch {featurizer.best_epoch_} of {len(featurizer.history_)})"
        )
    return 0


def _skipped_summary(
    n_entries: int, unreadable: list[tuple[str, str]], featurizer: DeepInfoMaxFeaturizer, labels: list[str]
) -> str:
    """How many structures were left out and the first few reasons, for an error message."""
    skipped = unreadable + [(labels[i], reason) for i, reason in getattr(featurizer, "skipped_", [])]
    first = "; ".join(f"{label}: {reason}" for label, reason in skipped[:3])
    return f"{len(skipped)} of {n_entries} structures skipped" + (f", first: {first}" if first else "")


def input_entries(inputs: Sequence[str], data_home: str | None = None) -> list[Entry]:
    """One entry per structure of ``pretrain``'s inputs: files and folders as for ``featurize``, data sets by name.

    An input that exists as a file or folder is read as one
    ([`expand_paths`][dim_sklearn.structure_files.expand_paths]); otherwise it must name a data set, whose structures
    are loaded with ids ``NAME[i]``.

    Raises
    ------
    FileNotFoundError
        An input that is neither an existing path nor a data set's name, or a data set whose file is missing.
    ValueError
        A file that is neither a CIF nor a JSON structure file, or a folder without CIFs.
    """
    known = list_datasets(data_home).index
    entries: list[Entry] = []
    for item in inputs:
        if os.path.exists(item):
            entries += expand_paths([item])
        elif item in known:
            structures = load_dataset(item, data_home)[0]
            entries += [Entry(f"{item}[{i}]", structure=s) for i, s in enumerate(structures)]
        else:
            raise FileNotFoundError(
                f"{item}: no such file or folder, and no data set of that name (data sets: {', '.join(known)})"
            )
    return entries


if __name__ == "__main__":
    raise SystemExit(main())
