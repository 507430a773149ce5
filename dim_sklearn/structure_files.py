"""Crystal vectors of structure files: CIFs, folders of CIFs and data-set JSON files, to a CSV.

Every input structure gives one row, in input order: a CIF file gives one, a
folder its ``*.cif`` files in sorted order, and a ``.json`` / ``.json.gz`` file in
the data-set layout (pandas ``orient="split"`` with a ``structure`` column) one
per row. A structure that cannot be read or featurised keeps its row, with NaN
features and the reason; nothing is dropped.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._utils import atomic_write

__all__ = ["Entry", "entry_label", "expand_paths", "read_cif", "read_entries", "write_features"]

JSON_SUFFIXES = (".json", ".json.gz")
_POSITION = re.compile(r"^structure \d+: ")  # StructureError's prefix, a position within a chunk


@dataclass(frozen=True)
class Entry:
    """One input structure: its id and either the structure, the CIF to read it from, or why it is missing."""

    id: str
    structure: Any = None
    path: Path | None = None
    reason: str | None = None

    def read(self) -> tuple[Any, str | None]:
        """The structure (None if unreadable) and the reason it is unreadable (None if readable)."""
        if self.path is not None:
            return read_cif(self.path)
        return self.structure, self.reason


def read_cif(path: str | os.PathLike) -> tuple[Any, str | None]:
    """The one structure of a CIF file, or None and the reason it cannot be read."""
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about every oddity it repairs
            structures = CifParser(str(path)).parse_structures(primitive=False, on_error="raise")
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError ... on bad CIFs
        return None, f"unreadable CIF ({type(exc).__name__}: {exc})"
    if len(structures) != 1:
        return None, f"the CIF holds {len(structures)} structures; give one per file"
    return structures[0], None


def _read_json(path: Path) -> list[Entry]:
    from matminer.utils.io import load_dataframe_from_json

    stem = path.name.removesuffix(".gz").removesuffix(".json")
    try:
        frame = load_dataframe_from_json(str(path), pbar=False)
    except Exception as exc:  # not JSON, not the data-set layout, ...
        return [Entry(stem, reason=f"unreadable structure file ({type(exc).__name__}: {exc})")]
    if "structure" not in frame.columns:
        return [Entry(stem, reason="structure file without a 'structure' column")]
    ids = frame["material_id"] if "material_id" in frame.columns else frame.index
    return [Entry(str(i), structure=s) for i, s in zip(ids, frame["structure"])]


def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Entry]:
    """One entry per input structure, in input order.

    CIF files are read later (:meth:`Entry.read`), JSON structure files now.

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    ValueError
        A file that is neither a CIF nor a JSON structure file, or a folder without CIFs.
    """
    entries: list[Entry] = []
    for path in map(Path, paths):
        if path.is_dir():
            cifs = sorted(path.glob("*.cif"))
            if not cifs:
                raise ValueError(f"{path}: a folder without *.cif files")
            entries += [Entry(cif.stem, path=cif) for cif in cifs]
        elif not path.is_file():
            raise FileNotFoundError(f"{path}: no such file or folder")
        elif path.suffix.lower() == ".cif":
            entries.append(Entry(path.stem, path=path))
        elif path.name.lower().endswith(JSON_SUFFIXES):
            entries += _read_json(path)
        else:
            raise ValueError(f"{path}: not a .cif, a folder of CIFs or a .json/.json.gz structure file")
    return entries


def entry_label(entry: Entry) -> str:
    """How a message names an entry: its CIF's path, else its id."""
    return str(entry.path) if entry.path is not None else entry.id


def read_entries(entries: Sequence[Entry]) -> tuple[list[Any], list[str], list[tuple[str, str]]]:
    """Read every entry's structure, for a caller that needs them all at once (pretraining).

    Returns
    -------
    structures : list of Structure
        The readable structures, in input order.
    labels : list of str
        One per structure: its CIF's path, else its id (:func:`entry_label`).
    unreadable : list of (str, str)
        The label and the reason of each entry that could not be read.
    """
    structures: list[Any] = []
    labels: list[str] = []
    unreadable: list[tuple[str, str]] = []
    for entry in entries:
        structure, reason = entry.read()
        if reason is None:
            structures.append(structure)
            labels.append(entry_label(entry))
        else:
            unreadable.append((entry_label(entry), reason))
    return structures, labels, unreadable


def _featurize_chunk(entries: Sequence[Entry], featurizer: Any, n_features: int) -> tuple[np.ndarray, list[str]]:
    structures, read_reasons = zip(*(entry.read() for entry in entries))
    reasons: list[str | None] = list(read_reasons)
    features = np.full((len(entries), n_features), np.nan)
    readable = [k for k, reason in enumerate(reasons) if reason is None]
    if readable:
        rows = featurizer.featurize_many(
            [structures[k] for k in readable], ignore_errors=True, return_errors=True, pbar=False
        )
        for k, row in zip(readable, rows):
            features[k] = row[:-1]
            if isinstance(row[-1], str):
                reasons[k] = _POSITION.sub("", row[-1])
    return features, [reason or "" for reason in reasons]


def write_features(
    entries: Sequence[Entry],
    featurizer: Any,
    output: str | os.PathLike,
    *,
    chunk_size: int = 256,
    progress: bool = True,
) -> tuple[int, int]:
    """Write the crystal vectors of input structures to the CSV file ``output``.

    Parameters
    ----------
    entries : sequence of Entry
        The input structures, from :func:`expand_paths`.
    featurizer : DeepInfoMaxFeaturizer
        A fitted featurizer.
    output : path
        The CSV: columns ``id``, the featurizer's ``feature_labels()`` and
        ``reason`` (empty when the structure was featurised; otherwise why not,
        with NaN features). One row per input structure, in input order.
    chunk_size : int, default=256
        Structures read and featurised at a time; memory grows with it, not
        with the number of CIF files.
    progress : bool, default=True
        A progress bar on stderr.

    Returns
    -------
    n_rows, n_failed : int
        Rows written, and how many of them have a reason.

    Raises
    ------
    WriteError
        The CSV cannot be written (a full disk, no permission, ...); the message
        names it and the cause. The rows go to a scratch file beside it that
        replaces ``output`` only when complete: a failed run leaves no partial
        CSV (and an earlier file of that name as it was).
    """
    from tqdm.auto import tqdm

    labels = list(featurizer.feature_labels())
    columns = ["id", *labels, "reason"]
    n_failed = 0
    with (
        atomic_write(output) as out,
        tqdm(total=len(entries), unit="structure", desc="featurize", disable=not progress, file=sys.stderr) as bar,
    ):
        out.write(pd.DataFrame(columns=columns).to_csv(index=False).encode())
        for start in range(0, len(entries), chunk_size):
            chunk = entries[start : start + chunk_size]
            features, reasons = _featurize_chunk(chunk, featurizer, len(labels))
            frame = pd.DataFrame(features, columns=labels)
            frame.insert(0, "id", [entry.id for entry in chunk])
            frame["reason"] = reasons
            out.write(frame.to_csv(header=False, index=False).encode())
            n_failed += sum(bool(reason) for reason in reasons)
            bar.update(len(chunk))
    return len(entries), n_failed
