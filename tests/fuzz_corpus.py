"""A seeded corpus of malformed, hostile and harmless variants of crystals, for the bad-input tests.

:func:`make_corpus` turns a few base structures (real ones, or hand-built) into
cases of :data:`KINDS`: each kind makes one input from a base structure and a
random generator, and says what the library must do with it: ``"row"`` (a
finite row), ``"error"`` (a NaN row with its reason, or a ``StructureError``
in strict mode) or ``"any"`` (either, but a NaN row always with its reason).
Cases are dealt round-robin over the kinds, so any prefix of 2 x len(KINDS)
cases holds every kind twice.

Run it to print the corpus table (cases, handled cleanly, crashes, hangs, NaN
without reason, lost rows) and the largest structure accepted, with its time
and peak memory:

    python tests/fuzz_corpus.py [--cases 1200] [--largest]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pymatgen.core import DummySpecies, IStructure, Lattice, Molecule, Structure  # noqa: E402

HEAVY = ["Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Og"]  # Z > 94: no feature data


@dataclass(frozen=True)
class Case:
    """One input of the corpus.

    Attributes
    ----------
    kind : str
        Name of the kind that made it (a key of :data:`KINDS`).
    entry : object
        What is handed to the library in the batch.
    expect : {"row", "error", "any"}
        What the library must do with it.
    """

    kind: str
    entry: Any
    expect: str


# ---------------------------------------------------------------- helpers


def _like(base: Structure, lattice: Any = None, species: Any = None, frac: Any = None) -> Structure:
    """``base`` with its lattice, species or fractional coordinates replaced (validation off where pymatgen allows)."""
    lattice = base.lattice if lattice is None else lattice
    lattice = lattice if isinstance(lattice, Lattice) else Lattice(lattice)
    return Structure(
        lattice,
        list(base.species) if species is None else species,
        base.frac_coords if frac is None else frac,
    )


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _change_basis(base: Structure, m: np.ndarray) -> Structure:
    """The same crystal on the lattice basis ``m @ L`` (m an integer unimodular matrix)."""
    return _like(base, m @ base.lattice.matrix, frac=base.frac_coords @ np.linalg.inv(m))


def _object_array(*items: Any) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for k, item in enumerate(items):
        out[k] = item
    return out


def _fcc_supercell(k: int) -> Structure:
    """k x k x k conventional fcc Cu cells (4 k^3 sites), built without pymatgen's supercell machinery."""
    cell = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    frac = ((grid + cell) / k).reshape(-1, 3)
    return Structure(Lattice.cubic(3.61 * k), ["Cu"] * len(frac), frac)


def _random_cell(n_sites: int, rng: np.random.Generator) -> Structure:
    """``n_sites`` Si atoms on a jittered grid of a triclinic cell (20 A^3 each): no symmetry, no overlaps.

    One element and no symmetry is the slowest input for pymatgen's primitive-cell search.
    """
    k = int(np.ceil(n_sites ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(k)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_sites]
    frac = (grid + 0.5 + rng.uniform(-0.15, 0.15, size=grid.shape)) / k
    a = (n_sites * 20.0) ** (1 / 3)
    lattice = Lattice.from_parameters(a, 1.05 * a, 0.95 * a, 84, 97, 103)
    return Structure(lattice, ["Si"] * n_sites, frac)


def _supercell(base: Structure, reps: tuple[int, int, int]) -> Structure:
    out = base.copy()
    out.make_supercell(list(reps))
    return out


def _near_singular(base: Structure, rng: np.random.Generator, eps: float) -> Structure:
    m = base.lattice.matrix.copy()
    m[2] = m[0] + m[1] + eps * np.linalg.norm(m[0]) * rng.normal(size=3)
    return _like(base, m)


def _scaled(base: Structure, factor: float) -> Structure:
    return _like(base, base.lattice.matrix * factor)


def _with_site(base: Structure, species: Any, index: int = 0) -> Structure:
    out = base.copy()
    out.replace(index, species)
    return out


def _extra_atom(base: Structure, offset_angstrom: float, rng: np.random.Generator) -> Structure:
    direction = rng.normal(size=3)
    cart = base.cart_coords[0] + offset_angstrom * direction / np.linalg.norm(direction)
    return Structure(
        base.lattice, [*base.species, base.species[0]], np.vstack([base.cart_coords, cart]), coords_are_cartesian=True
    )


def _pbc(base: Structure, pbc: tuple[bool, bool, bool]) -> Structure:
    return _like(base, Lattice(base.lattice.matrix, pbc=pbc))


def _bad_value(base: Structure, rng: np.random.Generator, value: float, where: str) -> Structure:
    if where == "coordinates":
        frac = base.frac_coords.copy()
        frac[rng.integers(len(base)), rng.integers(3)] = value
        return _like(base, frac=frac)
    matrix = base.lattice.matrix.copy()
    matrix[rng.integers(3), rng.integers(3)] = value
    return _like(base, matrix)


# ---------------------------------------------------------------- kinds

Maker = Callable[[Structure, np.random.Generator], Any]
KINDS: dict[str, tuple[str, Maker]] = {
    # harmless variants: a finite row each
    "original": ("row", lambda s, r: s),
    "rotated": ("row", lambda s, r: _like(s, s.lattice.matrix @ _rotation(r).T)),
    "strained 2%": (
        "row",
        lambda s, r: _like(s, s.lattice.matrix @ (np.eye(3) + 0.01 * (lambda a: a + a.T)(r.uniform(-1, 1, (3, 3))))),
    ),
    "translated": ("row", lambda s, r: _like(s, frac=s.frac_coords + r.random(3))),
    "sites permuted": ("row", lambda s, r: Structure.from_sites([s[k] for k in r.permutation(len(s))])),
    "unwrapped coordinates": ("row", lambda s, r: _like(s, frac=s.frac_coords + r.integers(-3, 4, (len(s), 3)))),
    "supercell 2x1x1": ("row", lambda s, r: _supercell(s, (2, 1, 1)) if 2 * len(s) <= 256 else s),
    "left-handed basis": ("row", lambda s, r: _change_basis(s, np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]]))),
    "sheared basis": ("row", lambda s, r: _change_basis(s, np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]]))),
    "negated lattice": ("row", lambda s, r: _like(s, -s.lattice.matrix)),
    "compressed 3%": ("row", lambda s, r: _scaled(s, 0.97)),
    "expanded 30%": ("row", lambda s, r: _scaled(s, 1.3)),
    "jittered 0.01 A": (
        "row",
        lambda s, r: Structure(
            s.lattice, s.species, s.cart_coords + r.normal(scale=0.01, size=(len(s), 3)), coords_are_cartesian=True
        ),
    ),
    "oxidation states": (
        "row",
        lambda s, r: s.copy().add_oxidation_state_by_element(
            {el.symbol: int(r.integers(-3, 4)) for el in s.composition.elements}
        ),
    ),
    "site properties with NaN": ("row", lambda s, r: s.copy(site_properties={"magmom": [np.nan] * len(s)})),
    "immutable IStructure": ("row", lambda s, r: IStructure.from_sites(s)),
    "1-tuple": ("row", lambda s, r: (s,)),
    "1-element list": ("row", lambda s, r: [s]),
    "shape-(1,) object array": ("row", lambda s, r: _object_array(s)),
    "plutonium (Z=94)": ("row", lambda s, r: _with_site(s, "Pu")),
    "all hydrogen": ("row", lambda s, r: _like(s, species=["H"] * len(s))),
    "single atom": ("row", lambda s, r: Structure(s.lattice, [s.species[0]], [[0, 0, 0]])),
    "labels": (
        "row",
        lambda s, r: Structure(s.lattice, s.species, s.frac_coords, labels=[f"x{k}" for k in range(len(s))]),
    ),
    # borderline: either a finite row or a stated reason
    "vacuum slab (c x 4)": (
        "any",
        lambda s, r: _like(s, s.lattice.matrix * [[1], [1], [4]], frac=s.frac_coords * [1, 1, 0.25]),
    ),
    "long cell near the conditioning limit": (
        "any",
        lambda s, r: _like(s, s.lattice.matrix * [[1], [1], [r.uniform(20, 60)]], frac=s.frac_coords * [1, 1, 0.02]),
    ),
    "large oxidation state": ("any", lambda s, r: _with_site(s, {"Fe8+": 1.0})),
    "cell of 1e3 A": ("any", lambda s, r: Structure(Lattice.cubic(999.0), [s.species[0]], [[0, 0, 0]])),
    "random 250-site cell": ("any", lambda s, r: _random_cell(250, r)),
    # not a structure
    "None": ("error", lambda s, r: None),
    "float NaN (a Series gap)": ("error", lambda s, r: float("nan")),
    "numpy float scalar": ("error", lambda s, r: np.float64(5.0)),
    "numpy int scalar": ("error", lambda s, r: np.int64(3)),
    "0-d float array": ("error", lambda s, r: np.array(5.0)),
    "0-d object array": ("error", lambda s, r: np.array(None, dtype=object)),
    "int": ("error", lambda s, r: 42),
    "bool": ("error", lambda s, r: True),
    "formula string": ("error", lambda s, r: s.composition.reduced_formula),
    "CIF text": ("error", lambda s, r: s.to(fmt="cif")),
    "bytes": ("error", lambda s, r: b"\x00\xff structure"),
    "dict (as_dict)": ("error", lambda s, r: s.as_dict()),
    "nested list": ("error", lambda s, r: [[s]]),
    "two structures in one entry": ("error", lambda s, r: [s, s]),
    "empty list": ("error", lambda s, r: []),
    "empty tuple": ("error", lambda s, r: ()),
    "2-element object array": ("error", lambda s, r: _object_array(s, s)),
    "Series entry": ("error", lambda s, r: pd.Series([s])),
    "DataFrame entry": ("error", lambda s, r: pd.DataFrame({"structure": [s]})),
    "Molecule": ("error", lambda s, r: Molecule(s.species, s.cart_coords)),
    "Lattice": ("error", lambda s, r: s.lattice),
    "PeriodicSite": ("error", lambda s, r: s[0]),
    "Composition": ("error", lambda s, r: s.composition),
    "generator": ("error", lambda s, r: (x for x in [s])),
    "plain object": ("error", lambda s, r: object()),
    # broken structures
    "disordered site": ("error", lambda s, r: _with_site(s, {"Fe": 0.5, "Ni": 0.5})),
    "vacancy (occupancy 0.5)": ("error", lambda s, r: _with_site(s, {"Fe": 0.5})),
    "empty structure": ("error", lambda s, r: Structure(s.lattice, [], [])),
    "NaN coordinate": ("error", lambda s, r: _bad_value(s, r, np.nan, "coordinates")),
    "inf coordinate": ("error", lambda s, r: _bad_value(s, r, np.inf, "coordinates")),
    "NaN in lattice": ("error", lambda s, r: _bad_value(s, r, np.nan, "lattice")),
    "inf in lattice": ("error", lambda s, r: _bad_value(s, r, -np.inf, "lattice")),
    "fractional coordinate 1e20": ("error", lambda s, r: _bad_value(s, r, 1e20, "coordinates")),
    "fractional coordinate 1e4": ("error", lambda s, r: _bad_value(s, r, 1e4, "coordinates")),
    "singular lattice (c = a + b)": ("error", lambda s, r: _near_singular(s, r, 0.0)),
    "near-singular lattice 1e-7": ("error", lambda s, r: _near_singular(s, r, 1e-7)),
    "near-singular lattice 1e-9..1e-4": ("error", lambda s, r: _near_singular(s, r, 10 ** r.uniform(-9, -4))),
    "near-singular lattice 1e-3": ("error", lambda s, r: _near_singular(s, r, 1e-3)),
    "zero lattice": ("error", lambda s, r: _like(s, np.zeros((3, 3)))),
    "needle cell (c x 1000)": ("error", lambda s, r: _like(s, s.lattice.matrix * [[1], [1], [1000]])),
    "cell of 1e4..1e40 A": ("error", lambda s, r: _scaled(s, 10 ** r.uniform(4, 40))),
    "cell of 1e300 A": ("error", lambda s, r: _scaled(s, 1e300)),
    "cell of 1e-3 of its size": ("error", lambda s, r: _scaled(s, 1e-3)),
    "cell of 1e-8 of its size": ("error", lambda s, r: _scaled(s, 1e-8)),
    "cell of 1/10 of its size": ("error", lambda s, r: _scaled(s, 0.1)),
    "overlapping atoms (0.1 A)": ("error", lambda s, r: _extra_atom(s, 0.1, r)),
    "coincident atoms": ("error", lambda s, r: _extra_atom(s, 0.0, r)),
    "all atoms at one point": ("error", lambda s, r: _like(s, frac=np.zeros((len(s), 3)) + r.random(3))),
    "element beyond Pu": ("error", lambda s, r: _with_site(s, str(r.choice(HEAVY)))),
    "dummy species": ("error", lambda s, r: _with_site(s, DummySpecies("X"))),
    "not periodic (pbc all False)": ("error", lambda s, r: _pbc(s, (False, False, False))),
    "slab pbc (True, True, False)": ("error", lambda s, r: _pbc(s, (True, True, False))),
    "random 400-site cell": ("error", lambda s, r: _random_cell(400, r)),
    "2,160-site low-symmetry cell": ("error", lambda s, r: _random_cell(2160, r)),
    "4,000-site Cu supercell": ("error", lambda s, r: _fcc_supercell(10)),
    "8,788-site Cu supercell": ("error", lambda s, r: _fcc_supercell(13)),
}


def make_corpus(bases: list[Structure], n_cases: int | None = None, seed: int = 0) -> list[Case]:
    """Cases dealt round-robin over :data:`KINDS` and the base structures.

    Parameters
    ----------
    bases : list of Structure
        Ordered crystals to vary (real ones, or hand-built).
    n_cases : int, optional
        Number of cases; default one per kind and base.
    seed : int, default=0
        The same seed gives the same corpus.
    """
    rng = np.random.default_rng(seed)
    names = list(KINDS)
    n_cases = len(names) * len(bases) if n_cases is None else n_cases
    cases = []
    for k in range(n_cases):
        name = names[k % len(names)]
        expect, make = KINDS[name]
        base = bases[(k // len(names)) % len(bases)]
        cases.append(Case(name, make(base, rng), expect))
    return cases


# ---------------------------------------------------------------- the table


def _table(n_cases: int, seed: int) -> None:
    """Every case on its own through build_point_sets and transform, strict and lenient: the corpus table."""
    import time
    import warnings

    from dim_sklearn import DeepInfoMaxFeaturizer, StructureError, load_dataset

    warnings.simplefilter("ignore")
    structures, _ = load_dataset("mp_cs419")
    bases = [structures[k] for k in BASES]
    corpus = make_corpus(bases, n_cases, seed)
    featurizer = DeepInfoMaxFeaturizer(max_epochs=0, random_state=0, ignore_errors=True).fit(bases)
    counts = dict.fromkeys(["clean", "crash", "hang", "nan without reason", "lost row", "wrong outcome"], 0)
    slowest = (0.0, "")
    for case in corpus:
        start = time.perf_counter()
        try:
            rows = featurizer.featurize_many([case.entry], ignore_errors=True, return_errors=True, pbar=False)
        except Exception as exc:
            counts["crash"] += 1
            print(f"crash: {case.kind}: {type(exc).__name__}: {exc}")
            continue
        seconds = time.perf_counter() - start
        slowest = max(slowest, (seconds, case.kind))
        if seconds > HANG_SECONDS:
            counts["hang"] += 1
        if len(rows) != 1:
            counts["lost row"] += 1
            continue
        values, error = np.array(rows[0][:-1], dtype=float), rows[0][-1]
        has_reason = isinstance(error, str) and error.startswith("structure 0: ")
        if not np.isfinite(values).all() and not has_reason:
            counts["nan without reason"] += 1
        elif (case.expect == "row" and has_reason) or (case.expect == "error" and not has_reason):
            counts["wrong outcome"] += 1
            print(f"wrong outcome: {case.kind}: {error}")
        else:
            counts["clean"] += 1
        if has_reason:
            try:
                featurizer.set_params(ignore_errors=False).transform([case.entry])
                counts["crash"] += 1  # a strict run must raise
            except StructureError as exc:
                counts["crash"] += exc.index != 0
            finally:
                featurizer.set_params(ignore_errors=True)
    print(
        f"| cases | kinds | handled cleanly | crashes | hangs (> {HANG_SECONDS:g} s) | NaN without reason | "
        "lost rows | slowest case |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {len(corpus)} | {len({c.kind for c in corpus})} | {counts['clean']} | {counts['crash']} | "
        f"{counts['hang']} | {counts['nan without reason']} | {counts['lost row']} | "
        f"{slowest[0]:.2f} s ({slowest[1]}) |"
    )
    if counts["wrong outcome"]:
        print(f"{counts['wrong outcome']} cases had another outcome than their kind expects")


def _largest() -> None:
    """Time and peak memory of the largest, slowest structure accepted: max_sites sites, one element, no symmetry."""
    import resource
    import time

    from dim_sklearn import DeepInfoMaxFeaturizer, PointSetConfig

    n_sites = PointSetConfig().max_sites
    structure = _random_cell(n_sites, np.random.default_rng(0))
    small = [Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])]
    for max_atoms in (50, 1000):
        featurizer = DeepInfoMaxFeaturizer(max_epochs=0, random_state=0, max_atoms=max_atoms).fit(small)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        row = featurizer.transform([structure])
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"largest accepted: {n_sites} sites, one element, no symmetry, max_atoms={max_atoms}: transform "
            f"{seconds:.2f} s, finite row: {bool(np.isfinite(row).all())}, peak resident memory {peak:.0f} MB "
            f"(+{peak - before:.0f} MB over the process before it)"
        )


BASES = (0, 7, 1790, 2000)
"""Indices of the real mp_cs419 structures the corpus varies (7, 12, 16 and 3 sites)."""
HANG_SECONDS = 5.0
"""A case taking longer than this counts as a hang."""


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--largest", action="store_true", help="measure the largest accepted structure instead")
    args = parser.parse_args()
    _largest() if args.largest else _table(args.cases, args.seed)
