"""Real crystal-structure data sets, by name.

Matbench tasks and matminer data sets go through matminer's own loader, which
downloads them when they are missing (the real path for users online) or reads
them from a folder. ``mp_crysxpp_2k`` ships inside the package (no folder, no
download). The other sets are read from ``<data_home>/<name>.json.gz``.

The folder is, in order: the ``data_home`` argument, the ``DIM_SKLEARN_DATA``
environment variable, then ``MATMINER_DATA`` (which matminer and matbench also
read). All sets share one file layout (pandas ``orient="split"`` JSON with a
``structure`` column), so one folder can serve everything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .exceptions import DatasetNotFoundError

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["DATA_ENV", "DatasetNotFoundError", "get_data_home", "list_datasets", "load_dataset"]

DATA_ENV = "DIM_SKLEARN_DATA"
MATMINER_ENV = "MATMINER_DATA"


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is and where it comes from."""

    name: str
    source: str  # "matbench", "matminer", "file" or "embedded" (package data)
    n_structures: int
    targets: tuple[str, ...]
    description: str

    @property
    def filename(self) -> str:
        return f"{self.name}.json.gz"


_DATASETS = {
    info.name: info
    for info in [
        DatasetInfo(
            "matbench_phonons",
            "matbench",
            1265,
            ("last phdos peak",),
            "Official Matbench v0.1 task: highest optical phonon DOS peak (cm^-1), Petretto et al. 2018.",
        ),
        DatasetInfo(
            "flla",
            "matminer",
            3938,
            ("formation_energy_per_atom", "e_above_hull"),
            "Materials Project formation energies, Faber et al. 2015.",
        ),
        DatasetInfo(
            "dielectric_constant",
            "matminer",
            1056,
            ("n", "poly_electronic", "poly_total", "band_gap"),
            "Materials Project dielectric constants and refractive index, Petousis et al. 2017.",
        ),
        DatasetInfo(
            "elastic_tensor_2015",
            "matminer",
            1181,
            ("K_VRH", "G_VRH"),
            "Materials Project elastic tensors, de Jong et al. 2015.",
        ),
        DatasetInfo(
            "piezoelectric_tensor",
            "matminer",
            941,
            ("eij_max",),
            "Materials Project piezoelectric tensors, de Jong et al. 2015.",
        ),
        DatasetInfo(
            "mp_cs419",
            "file",
            3202,
            ("formation_energy_per_atom", "band_gap", "is_metal", "K_VRH", "G_VRH"),
            "Materials Project (2024) formation energies, band gaps and moduli.",
        ),
        DatasetInfo(
            "perov5",
            "file",
            7572,
            ("heat_all", "heat_ref", "dir_gap", "ind_gap"),
            "Castelli cubic perovskites (CDVAE Perov-5 val + test splits).",
        ),
        DatasetInfo(
            "carbon24",
            "file",
            4062,
            ("energy_per_atom",),
            "AIRSS carbon polymorphs at 10 GPa (CDVAE Carbon-24 val + test splits).",
        ),
        DatasetInfo(
            "mp_crysxpp",
            "file",
            36737,
            ("formation_energy_per_atom",),
            "Materials Project formation energies of 36,737 ordered structures, the CrysXPP set "
            "(Das et al. 2022; MIT repository kdmsit/crysxpp, Materials Project data CC BY 4.0).",
        ),
        DatasetInfo(
            "mp_crysxpp_2k",
            "embedded",
            2000,
            ("formation_energy_per_atom",),
            "2,000 structures of the mp_crysxpp test split, shipped with the package (+ material_id, "
            "formula, mp_crysxpp_row). Materials Project data, CC BY 4.0: cite Jain et al., APL Mater. 1, "
            "011002 (2013) and CrysXPP, Das et al., npj Comput. Mater. 8, 43 (2022), arXiv:2104.10869.",
        ),
    ]
}


def get_data_home(data_home: str | os.PathLike | None = None) -> Path | None:
    """The data folder: ``data_home``, else $DIM_SKLEARN_DATA, else $MATMINER_DATA, else None."""
    for candidate in (data_home, os.environ.get(DATA_ENV), os.environ.get(MATMINER_ENV)):
        if candidate:
            return Path(candidate).expanduser()
    return None


def _info(name: str) -> DatasetInfo:
    try:
        return _DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(_DATASETS)}") from None


def list_datasets(data_home: str | os.PathLike | None = None) -> pd.DataFrame:
    """The data sets [`load_dataset`][dim_sklearn.load_dataset] knows, and whether each is at hand.

    Returns
    -------
    DataFrame indexed by name
        Columns ``source``, ``n_structures``, ``targets``, ``description`` and
        ``available``: True when the file is in the data folder or embedded in
        the package, "download" when matminer can fetch it, False otherwise.
    """
    home = get_data_home(data_home)
    rows = []
    for info in _DATASETS.values():
        present = info.source == "embedded" or (home is not None and (home / info.filename).is_file())
        available: bool | str = True if present else ("download" if info.source != "file" else False)
        rows.append(
            {
                "name": info.name,
                "source": info.source,
                "n_structures": info.n_structures,
                "targets": ", ".join(info.targets),
                "description": info.description,
                "available": available,
            }
        )
    return pd.DataFrame(rows).set_index("name")


def _missing_message(info: DatasetInfo, home: Path | None) -> str:
    where = f"in {home}" if home is not None else "(no data folder set)"
    return (
        f"data set {info.name!r}: file {info.filename} not found {where}. Put it in a folder and pass "
        f"data_home=..., or set {DATA_ENV} (or {MATMINER_ENV}) to that folder."
    )


def load_dataset(
    name: str, data_home: str | os.PathLike | None = None, *, download_if_missing: bool = True
) -> tuple[list[Structure], pd.DataFrame]:
    """Load a real data set by name.

    Parameters
    ----------
    name : str
        One of [`list_datasets`][dim_sklearn.list_datasets]' index. ``"mp_crysxpp_2k"`` is embedded in
        the package: 2,000 structures of the mp_crysxpp test split with their
        formation energies (Materials Project data, CC BY 4.0; cite Jain et al.,
        APL Mater. 1, 011002 (2013) and Das et al., npj Comput. Mater. 8, 43
        (2022)); it needs no data folder.
    data_home : str or Path, optional
        Folder holding ``<name>.json.gz``; defaults to $DIM_SKLEARN_DATA, then
        $MATMINER_DATA. Not used for the embedded set.
    download_if_missing : bool, default=True
        For Matbench and matminer sets, let matminer download a missing file.

    Returns
    -------
    structures : list of pymatgen.core.Structure
    targets : DataFrame
        Every other column, in the same row order. Matbench tasks are indexed by
        their Matbench ids (``mb-phonons-0001``, ...).

    Raises
    ------
    DatasetNotFoundError
        The file is missing and cannot be downloaded; the message names the file
        and the environment variables.
    """
    info = _info(name)
    home = get_data_home(data_home)
    if info.source == "embedded":
        with as_file(files(__package__) / "data" / info.filename) as path:
            frame = _read_frame(path)
    elif info.source == "file":
        if home is None or not (home / info.filename).is_file():
            raise DatasetNotFoundError(_missing_message(info, home))
        frame = _read_frame(home / info.filename)
    else:
        from matminer.datasets import load_dataset as matminer_load

        if home is not None and not (home / info.filename).is_file() and not download_if_missing:
            raise DatasetNotFoundError(_missing_message(info, home))
        try:
            frame = matminer_load(
                name, data_home=None if home is None else str(home), download_if_missing=download_if_missing
            )
        except Exception as exc:  # matminer raises IOError, requests errors, ...
            raise DatasetNotFoundError(f"{_missing_message(info, home)} ({type(exc).__name__}: {exc})") from exc
        if info.source == "matbench":
            frame.index = pd.Index(_matbench_ids(name, len(frame)), name="mbid")
    structures = frame["structure"].tolist()
    return structures, frame.drop(columns="structure")


def _read_frame(path: Path) -> pd.DataFrame:
    """A data-set file (pandas ``orient="split"`` JSON, gzipped) with its structures decoded."""
    from matminer.utils.io import load_dataframe_from_json

    return load_dataframe_from_json(str(path), pbar=False)


def _matbench_ids(name: str, n: int) -> list[str]:
    """Matbench's row ids: ``mb-phonons-0001`` and so on, numbered from 1 in file order."""
    prefix = name.replace("matbench", "mb").replace("_", "-")
    width = len(str(n))
    return [f"{prefix}-{i + 1:0{width}d}" for i in range(n)]
