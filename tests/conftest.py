"""Shared fixtures: the real data sets beside the checkout, and small hand-made crystals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

REPO = Path(__file__).resolve().parents[1]
_SHARED = REPO.parent / "shared" / "data"
if not (os.environ.get("DIM_SKLEARN_DATA") or os.environ.get("MATMINER_DATA")) and _SHARED.is_dir():
    os.environ["MATMINER_DATA"] = str(_SHARED)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reads the data folder ``data``: ``-m "not data"`` runs the layer that needs nothing."""
    for item in items:
        if "data_home" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def data_home() -> Path:
    home = os.environ.get("DIM_SKLEARN_DATA") or os.environ.get("MATMINER_DATA")
    if not home:  # a fresh machine: the tests on the embedded set and hand-built crystals still run
        pytest.skip("no data folder: set DIM_SKLEARN_DATA or MATMINER_DATA (CI does, through .ci/run)")
    return Path(home)


@pytest.fixture(scope="session")
def mp_cs419(data_home):
    """(structures, targets) of the real mp_cs419 set."""
    from dim_sklearn import load_dataset

    return load_dataset("mp_cs419", data_home)


@pytest.fixture(scope="session")
def small_structures(mp_cs419):
    """The first 80 real mp_cs419 structures: enough for quick pretraining runs."""
    return mp_cs419[0][:80]


@pytest.fixture(scope="session")
def structures(small_structures):
    """40 real mp_cs419 structures, for the estimator tests."""
    return small_structures[:40]


@pytest.fixture(scope="session")
def targets(mp_cs419):
    """Formation energies (eV/atom) of ``structures``."""
    return mp_cs419[1]["formation_energy_per_atom"].to_numpy()[:40]


@pytest.fixture(scope="session")
def phonons(data_home):
    from dim_sklearn import load_dataset

    return load_dataset("matbench_phonons", data_home)


@pytest.fixture
def rocksalt() -> Structure:
    """Conventional NaCl (8 sites, species interleaved); its primitive cell has 2 sites."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def perovskite() -> Structure:
    """Cubic SrTiO3, 5 sites, already primitive."""
    return Structure(
        Lattice.cubic(3.905),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


_PROTOTYPES = (  # (space group, species, fractional coordinates, lattice constant per Angstrom of mean radius)
    ("Fm-3m", ("A", "B"), [[0, 0, 0], [0.5, 0.5, 0.5]], 2.0),  # rock salt
    ("Pm-3m", ("A", "B"), [[0, 0, 0], [0.5, 0.5, 0.5]], 1.2),  # caesium chloride
    ("F-43m", ("A", "B"), [[0, 0, 0], [0.25, 0.25, 0.25]], 2.3),  # zinc blende
    ("Fm-3m", ("A", "B"), [[0, 0, 0], [0.25, 0.25, 0.25]], 2.2),  # fluorite (B on 8c)
)
_PAIRS = (("Na", "Cl"), ("Mg", "O"), ("Li", "F"), ("K", "Br"), ("Ca", "S"), ("Zn", "Se"), ("Ga", "As"), ("Ba", "O"))


@pytest.fixture(scope="session")
def hand_built() -> list[Structure]:
    """32 small binary crystals (4 prototypes x 8 element pairs), built from space groups: no data folder needed."""
    from pymatgen.core import Element

    crystals = []
    for group, _, coords, scale in _PROTOTYPES:
        for a, b in _PAIRS:
            radius = (Element(a).atomic_radius + Element(b).atomic_radius) / 2
            crystals.append(Structure.from_spacegroup(group, Lattice.cubic(scale * 2 * radius), [a, b], coords))
    return crystals
