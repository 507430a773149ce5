"""Crystal vectors of structure files: CIFs, folders of CIFs and data-set JSON files, to a CSV.

Every input structure gives one row, in input order: a CIF file gives one, a
folder its ``*.cif`` files in sorted order, and a ``.json`` / ``.json.gz`` file in
the data-set layout (pandas ``orient="split"`` with a ``structure`` column) one
per row. A structure that cannot be read or featurised keeps its row, with NaN
features and the reason; nothing is dropped.
"""

from __future__ import annotations

import math
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
from .pointsets.build import MAX_FRACTIONAL, MAX_LENGTH

__all__ = ["Entry", "entry_label", "expand_paths", "read_cif", "read_entries", "write_features"]

JSON_SUFFIXES = (".json", ".json.gz")
_POSITION = re.compile(r"^structure \d+: ")  # StructureError's prefix, a position within a chunk
_FRACTIONAL = ("_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z")
_LENGTHS = ("_cell_length_a", "_cell_length_b", "_cell_length_c")
_ANGLES = ("_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
_CRYSTAL_SYSTEM = ("_symmetry_cell_setting", "_space_group_crystal_system")
"""CIF data names of a block's crystal system, from which pymatgen completes a cell given in part."""
_COINCIDENT = re.compile(r"Occupancy (\S+?)\.? exceeded tolerance")
_THIN = re.compile(r"thickness=.* below threshold")
_SECTION = re.compile(r"No structure parsed for section \d+ in CIF\.\s*")


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
    """The one structure of a CIF file, or None and the reason it cannot be read.

    The file's cell, fractional coordinates and occupancies are checked before
    pymatgen builds the structure, which would otherwise take impossible values
    silently or fail with a message about something else: cell lengths in
    (0, ``dim_sklearn.pointsets.build.MAX_LENGTH``] A, angles in (0, 180) degrees
    with a volume, finite coordinates within
    +-``dim_sklearn.pointsets.build.MAX_FRACTIONAL``, occupancies in [0, 1], a
    complete cell (or a crystal system to complete it), labelled atom sites.
    pymatgen's own failures are reported in words that point at the file
    (atom sites that coincide, rather than "Occupancy 2.0 exceeded tolerance").
    """
    from pymatgen.io.cif import CifParser

    problem = _cif_problem(path)
    if problem is not None:
        return None, f"unreadable CIF ({problem})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about every oddity it repairs
            structures = CifParser(str(path)).parse_structures(primitive=False, on_error="raise")
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError ... on bad CIFs
        return None, f"unreadable CIF ({_pymatgen_failure(exc)})"
    if len(structures) != 1:
        return None, f"the CIF holds {len(structures)} structures; give one per file"
    return structures[0], None


def _cif_problem(path: str | os.PathLike) -> str | None:
    """What makes a CIF's cell, atom positions or occupancies unusable, found before pymatgen reads them; or None.

    pymatgen reads a negative cell length as positive and an angle of 200
    degrees as 160, wraps a coordinate of 1e308 into the cell (or merges the
    atom it moves with another, reported as "Occupancy 2.0 exceeded
    tolerance"), drops a site whose occupancy is NaN or negative, and fails on
    infinite coordinates, missing atom sites or an empty loop with messages
    about integers. Here, in every data block with atom sites: the cell must
    be complete (or completed by the crystal system the block names), every
    site labelled, cell lengths numbers in (0, ``dim_sklearn.pointsets.build.MAX_LENGTH``] A, cell
    angles in (0, 180) degrees with a non-zero volume, fractional coordinates
    finite numbers within +-``dim_sklearn.pointsets.build.MAX_FRACTIONAL`` (the
    limits [`build_point_set`][dim_sklearn.build_point_set] applies), and occupancies that
    are numbers in [0, 1]. A file that is not CIF syntax at all is left to
    pymatgen's parser, which says so.
    """
    from pymatgen.io.cif import CifFile

    try:
        parsed = CifFile.from_file(str(path)).data.values()
    except ZeroDivisionError:  # pymatgen's loop parser divides by the number of values
        return "a loop_ lists column names but no values"
    except Exception:
        return None
    blocks = [{key.lower(): value for key, value in block.data.items()} for block in parsed]  # CIF names: any case
    with_sites = [block for block in blocks if _FRACTIONAL[0] in block]
    if not with_sites:
        if any("_atom_site_cartn_x" in block for block in blocks):
            return (
                "atom positions given only as Cartesian coordinates (_atom_site_Cartn_x, ...); fractional ones are read"
            )
        return "no atom sites (_atom_site_fract_x, _atom_site_fract_y, _atom_site_fract_z)"
    for block in with_sites:
        problem = _cell_problem(block) or _site_problem(block)
        if problem is not None:
            return problem
    return None


def _number(raw: Any) -> float | None:
    """A CIF number (a standard uncertainty in brackets allowed), or None for ``?``, ``.`` and text."""
    from pymatgen.io.cif import str2float

    try:
        return float(str2float(raw))
    except (ValueError, TypeError):
        return None


def _out_of_range(name: str, raw: Any, low: float, high: float, words: str, *, open_low: bool = False) -> str | None:
    """Why ``raw`` is not a finite number in [low, high] (``(low, high]`` with ``open_low``), or None."""
    value = _number(raw)
    if value is None:
        return f"{name} is {raw!r}, not a number"
    if not (math.isfinite(value) and low <= value <= high and not (open_low and value == low)):
        return f"{name} is {raw}, {words}"
    return None


def _cell_problem(block: dict[str, Any]) -> str | None:
    """What is wrong with the cell lengths and angles of a data block, or None.

    Parameters the block leaves out are its crystal system's to give, when it
    names one (pymatgen then fills them in); otherwise all six are needed.
    """
    missing = [key for key in (*_LENGTHS, *_ANGLES) if key not in block]
    if missing and not any(block.get(key) for key in _CRYSTAL_SYSTEM):
        return f"an incomplete cell: no {', '.join(missing)}"
    for key in _LENGTHS:
        if key in block:
            problem = _out_of_range(
                key, block[key], 0, MAX_LENGTH, f"not a length in (0, {MAX_LENGTH:g}] A", open_low=True
            )
            if problem is not None:
                return problem
    angles = []
    for key in _ANGLES:
        if key in block:
            value = _number(block[key])
            if value is None or not 0 < value < 180:
                return f"{key} is {block[key]}, not an angle between 0 and 180 degrees"
            angles.append(value)
    if len(angles) == len(_ANGLES):
        cosines = np.cos(np.radians(angles))
        if 1 - np.sum(cosines**2) + 2 * np.prod(cosines) < 1e-12:
            return "the cell angles {} give a flat cell (no volume)".format(", ".join(str(block[k]) for k in _ANGLES))
    return None


def _column(block: dict[str, Any], name: str) -> list:
    """The values of a data name in a block: a loop's column, or one value as a list."""
    values = block.get(name, [])
    return values if isinstance(values, list) else [values]


def _site_problem(block: dict[str, Any]) -> str | None:
    """What is wrong with the atom sites of a data block (labels, fractional coordinates, occupancies), or None."""
    coordinates = [_column(block, name) for name in _FRACTIONAL]
    if not coordinates[0]:
        return "no atom sites (the _atom_site loop is empty)"
    if "_atom_site_label" not in block:
        return "atom sites without _atom_site_label (each site needs its label)"
    occupancies = _column(block, "_atom_site_occupancy")
    limit = f"not a finite number within +-{MAX_FRACTIONAL:g}"
    for k, label in enumerate(_column(block, "_atom_site_label")):
        problems = [
            _out_of_range(f"{name} of site {label}", column[k], -MAX_FRACTIONAL, MAX_FRACTIONAL, limit)
            for name, column in zip(_FRACTIONAL, coordinates)
            if k < len(column)
        ]
        if k < len(occupancies) and _number(occupancies[k]) is not None:  # "?" or ".": pymatgen's to read
            name = f"_atom_site_occupancy of site {label}"
            problems.append(_out_of_range(name, occupancies[k], 0, 1, "not an occupancy from 0 to 1"))
        problem = next((problem for problem in problems if problem is not None), None)
        if problem is not None:
            return problem
    return None


def _pymatgen_failure(exc: Exception) -> str:
    """pymatgen's failure on a CIF in words that point at the file's problem."""
    message = _SECTION.sub("", str(exc))
    coincident = _COINCIDENT.search(message)
    if coincident:  # every site's own occupancy is at most 1 (_cif_problem): sites were merged onto one position
        return (
            f"atom sites coincide: after the CIF's symmetry operations, sites on one position add up to occupancy "
            f"{coincident[1]}; overlapping or duplicated atoms"
        )
    if _THIN.search(message):
        return "a cell less than 0.01 A thick between two faces: its lengths or angles are far too small"
    return f"{type(exc).__name__}: {message}"


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

    CIF files are read later (``Entry.read``), JSON structure files now.

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
        One per structure: its CIF's path, else its id (``entry_label``).
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
        The input structures, from [`expand_paths`][dim_sklearn.structure_files.expand_paths].
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
    n_rows : int
        Rows written.
    n_failed : int
        How many of them have a reason (structures that could not be featurised).

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
