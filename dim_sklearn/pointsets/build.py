"""Crystal -> Site-Net point set (docs/method.md, section 1).

A crystal becomes a set of *queries*, its unique (primitive-cell) sites, and
*keys*, every site of a near-orthorhombic supercell of at most ``max_atoms``
atoms. Each key is an image of one unique site; ``PointSet.key_site``
states which, explicitly. Pair features are minimum-image distances inside the
supercell, in Angstrom.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, overload

import numpy as np
import scipy.linalg

from .._utils import Rule, boolean, check_fields, integer, real
from ..exceptions import StructureError
from .elements import MAX_Z, SITE_PROPERTIES, site_property_table

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "MAX_ATOMS",
    "MAX_FRACTIONAL",
    "MAX_LENGTH",
    "MAX_SITES",
    "MIN_CONDITIONING",
    "PointSet",
    "PointSetConfig",
    "StructureError",
    "as_structure_list",
    "build_point_set",
    "build_point_sets",
    "minimum_image_distances",
    "point_set_cell",
    "supercell_matrix",
]


CONSTRUCTION_VERSION = 2
"""Version of the crystal -> point set construction; cached point sets are keyed on it."""
MAX_ATOMS = 1000
"""Largest accepted ``max_atoms`` (supercell size)."""
MAX_SITES = 1000
"""Largest accepted ``max_sites``: pymatgen's primitive-cell search takes about a minute on 1,000 sites of one
element without symmetry and grows with about the cube of the count (the real data sets reach 200 sites)."""
MAX_LENGTH = 1000.0
"""Longest accepted lattice vector, in Angstrom (the real data sets reach 162 A)."""
MAX_FRACTIONAL = 1000.0
"""Largest accepted absolute fractional coordinate: farther out, wrapping into the cell loses the position."""
MIN_CONDITIONING = 5e-3
"""Smallest accepted ratio of the lattice matrix's smallest to largest singular value.

pymatgen's Niggli reduction inside the primitive-cell search takes time that
grows steeply as the ratio falls (1 x 1 x 1,000 A cell, ratio 1e-3: 12 s; a
near-singular cell at 1e-8: hours); at 5e-3 it takes under half a second. The
real data sets go down to 0.019.
"""
_TIE = 1e-6
"""Tolerance under which two supercell axis lengths (relative) or pair distances (A) count as equal."""
_NEAR_SYMMETRY = 1e-3
"""Relative tolerance on the metric under which a basis change counts as a symmetry of the lattice.

pymatgen's Niggli reduction leaves bases whose metrics agree to about 1e-4, so
axes equal to that precision are treated as interchangeable and the choice
among them is made on the crystal's distances instead.
"""
_MAX_PRIMITIVE_STEPS = 8
"""Primitive-cell searches per structure: each one that succeeds at least halves the site count."""
_PYMATGEN_FAILURES = (ValueError, ArithmeticError, IndexError)
"""What pymatgen raises on a structure it cannot process (numpy's LinAlgError is a ValueError)."""


@dataclass(frozen=True)
class PointSetConfig:
    """How crystals become point sets.

    Parameters
    ----------
    max_atoms : int, default=50
        Largest supercell (N), at most ``MAX_ATOMS``. A primitive cell of
        more than ``max_atoms / 2`` sites is used as is.
    max_sites : int, default=256
        Largest number of sites accepted in the input cell, checked before the
        primitive-cell search (whose cost grows with about the cube of the
        site count); larger crystals raise [`StructureError`][dim_sklearn.StructureError]. At most
        ``MAX_SITES``. The default admits every structure of the real data
        sets (up to 200 sites).
    oxidation : bool, default=False
        Append the site's oxidation state (0 when undecorated) as a ninth feature.
    min_distance : float, default=0.5
        Atoms closer than this (Angstrom), including periodic images, are
        rejected as overlapping.
    """

    max_atoms: int = 50
    max_sites: int = 256
    oxidation: bool = False
    min_distance: float = 0.5

    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        "max_atoms": integer(1, MAX_ATOMS),
        "max_sites": integer(1, MAX_SITES),
        "oxidation": boolean,
        "min_distance": real(0),
    }
    """What each field must be; the estimators check their parameters of these names by the same rules."""

    def __post_init__(self) -> None:
        check_fields(self, **self.FIELD_RULES)

    @property
    def n_site_features(self) -> int:
        return len(SITE_PROPERTIES) + int(self.oxidation)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class PointSet:
    """One crystal as Site-Net sees it.

    Attributes
    ----------
    atomic_numbers : ndarray of shape (n_sites,)
        Element of each unique site.
    site_features : ndarray of shape (n_sites, n_features), float32
        Scaled Magpie properties (and optionally oxidation state) per unique site.
    distances : ndarray of shape (n_sites, n_keys), float32
        Minimum-image distance (Angstrom) from unique site i to supercell site j
        inside the supercell; ``distances[i, self_key[i]] == 0``.
    key_site : ndarray of shape (n_keys,), int64
        The unique site each supercell site is an image of.
    supercell_matrix : ndarray of shape (3, 3), int64
        Supercell lattice = ``supercell_matrix @ primitive lattice`` (row vectors).
    """

    atomic_numbers: np.ndarray
    site_features: np.ndarray
    distances: np.ndarray
    key_site: np.ndarray
    supercell_matrix: np.ndarray

    @property
    def n_sites(self) -> int:
        return int(self.site_features.shape[0])

    @property
    def n_keys(self) -> int:
        return int(self.key_site.shape[0])

    @property
    def n_images(self) -> int:
        return self.n_keys // self.n_sites

    @property
    def self_key(self) -> np.ndarray:
        """Key index of each unique site's own position (its image at the origin)."""
        return np.arange(self.n_sites) * self.n_images

    @cached_property
    def distance_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct values of ``distances`` (sorted) and the position of each distance among them.

        Computed once per point set and kept (not saved by the point-set
        cache): batching merges these instead of sorting every batch's pairs.
        """
        values, inverse = np.unique(self.distances, return_inverse=True)
        return values, inverse.reshape(self.distances.shape).astype(np.int32)


def supercell_matrix(lattice: np.ndarray, n_sites: int, max_atoms: int) -> np.ndarray:
    """Integer matrix of the near-orthorhombic supercell of at most ``max_atoms`` sites.

    The row-vector lattice L is RQ-decomposed (L = R Q); the unit upper-triangular
    shear S = diag(R) R^-1 makes S L orthorhombic. Starting from one repetition per
    axis, the axis whose length ``counts[k] * |R_kk|`` is shortest is grown by one
    while ``prod(counts) * n_sites <= max_atoms`` (of axes equal within a
    relative 1e-6, the first). The result is ``rint(diag(counts) @ S)``, whose
    determinant is ``prod(counts)``. It depends on the lattice only through the
    metric ``L L^T``.

    Parameters
    ----------
    lattice : ndarray of shape (3, 3)
        Primitive lattice vectors as rows (Angstrom).
    n_sites : int
        Sites in the primitive cell.
    max_atoms : int
        Largest number of sites in the supercell.
    """
    if 2 * n_sites > max_atoms:
        return np.eye(3, dtype=np.int64)
    r, _ = scipy.linalg.rq(np.asarray(lattice, dtype=float))
    diag = np.diag(r)
    shear = np.diag(diag) @ np.linalg.inv(r)
    extent = np.abs(diag)
    counts = np.ones(3, dtype=np.int64)
    while True:
        lengths = counts * extent
        k = int(np.argmax(lengths <= lengths.min() * (1 + _TIE)))  # the first of near-equal axes
        if np.prod(counts) // counts[k] * (counts[k] + 1) * n_sites > max_atoms:
            break
        counts[k] += 1
    return np.rint(counts[:, None] * shear).astype(np.int64)


@lru_cache(maxsize=1)
def _image_offsets() -> np.ndarray:
    grid = np.arange(-1, 2)
    return np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3).astype(float)


def _reduced_basis(lattice: np.ndarray) -> np.ndarray:
    from pymatgen.core import Lattice

    return Lattice(lattice).lll_matrix


def _shortest_images(reduced: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    frac = vectors @ np.linalg.inv(reduced)
    frac -= np.round(frac)
    candidates = (frac @ reduced)[..., None, :] + _image_offsets() @ reduced
    return np.sqrt(np.min(np.einsum("...k,...k->...", candidates, candidates), axis=-1))


def minimum_image_distances(lattice: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Length of the shortest periodic image of each Cartesian vector.

    Works in the LLL-reduced basis of ``lattice``, wraps fractional components
    to [-0.5, 0.5] and searches the 27 neighbouring images.

    Parameters
    ----------
    lattice : ndarray of shape (3, 3)
        Lattice vectors as rows.
    vectors : ndarray of shape (..., 3)
        Cartesian difference vectors.

    Returns
    -------
    ndarray of shape (...)
    """
    return _shortest_images(_reduced_basis(lattice), vectors)


@lru_cache(maxsize=1)
def _small_vectors() -> np.ndarray:
    """The 26 nonzero integer vectors with components in {-1, 0, 1}."""
    grid = np.stack(np.meshgrid(*[(-1, 0, 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return grid[np.any(grid != 0, axis=1)]


def _metric_symmetries(lattice: np.ndarray) -> np.ndarray:
    """Basis changes G (rows in {-1, 0, 1}, determinant +-1) with ``G L`` of nearly the metric of ``L``.

    For a Niggli-reduced basis ``L`` these are the lattice's point symmetries and
    its near-symmetries within ``_NEAR_SYMMETRY``; the identity comes first.
    """
    metric = lattice @ lattice.T
    tolerance = _NEAR_SYMMETRY * np.trace(metric)
    vectors = _small_vectors()
    norms = np.einsum("vi,ij,vj->v", vectors, metric, vectors)
    rows = [vectors[np.abs(norms - metric[k, k]) <= tolerance] for k in range(3)]
    changes = np.stack(np.meshgrid(*(np.arange(len(r)) for r in rows), indexing="ij"), -1).reshape(-1, 3)
    changes = np.stack([rows[k][changes[:, k]] for k in range(3)], axis=1)
    mapped = changes @ metric @ changes.transpose(0, 2, 1)
    keep = (np.abs(mapped - metric).reshape(len(changes), -1).max(axis=1) <= tolerance) & (
        np.abs(np.rint(np.linalg.det(changes))) == 1
    )
    changes = changes[keep]
    identity = np.all(changes == np.eye(3, dtype=changes.dtype), axis=(1, 2))
    return np.concatenate([changes[identity], changes[~identity]]).astype(np.int64)


def _distinct_supercells(matrix: np.ndarray, symmetries: np.ndarray) -> list[np.ndarray]:
    """One basis change per distinct supercell lattice ``matrix @ G L`` among the symmetries ``G``, first first."""
    bases = matrix @ symmetries
    remaining = np.ones(len(symmetries), dtype=bool)
    chosen = []
    while remaining.any():
        k = int(np.argmax(remaining))
        chosen.append(symmetries[k])
        ratio = bases @ np.linalg.inv(bases[k])  # integer exactly where the lattices coincide
        remaining &= ~np.all(np.abs(ratio - np.rint(ratio)) < 1e-8, axis=(1, 2))
    return chosen


def _pair_fingerprint(distances: np.ndarray, numbers: np.ndarray, key_site: np.ndarray) -> np.ndarray:
    """Sorted query-key distances of each (query element, key element) pair, concatenated: blind to setting."""
    pair = numbers[:, None] * 1000 + numbers[key_site][None, :]
    order = np.lexsort((distances.ravel(), pair.ravel()))
    return distances.ravel()[order]


def _first_setting(fingerprints: list[np.ndarray]) -> int:
    """Index of the lexicographically smallest fingerprint, differences under 1e-6 A counting as ties."""
    best = 0
    for k in range(1, len(fingerprints)):
        differ = np.flatnonzero(np.abs(fingerprints[k] - fingerprints[best]) > _TIE)
        if differ.size and fingerprints[k][differ[0]] < fingerprints[best][differ[0]]:
            best = k
    return best


def _check_structure(structure: Any, config: PointSetConfig) -> None:
    """Every check that needs no symmetry search, cheapest first.

    They bound the work of the pymatgen calls that follow: a structure that
    passes holds at most ``config.max_sites`` sites in a well-conditioned cell
    of finite, bounded size.
    """
    from pymatgen.core import IStructure

    if not isinstance(structure, IStructure):
        raise StructureError(f"expected a pymatgen Structure, got {type(structure).__name__}")
    if not all(structure.lattice.pbc):
        raise StructureError(f"not periodic in all three directions (pbc={tuple(structure.lattice.pbc)})")
    n_sites = len(structure)
    if n_sites == 0:
        raise StructureError("empty structure (no sites)")
    if n_sites > config.max_sites:
        raise StructureError(
            f"{n_sites} sites in the input cell, more than max_sites={config.max_sites} (checked before the "
            "primitive-cell search, whose cost grows with about the cube of the site count)"
        )
    if not structure.is_ordered:
        raise StructureError("disordered structure (partial occupancies are not supported)")
    matrix = structure.lattice.matrix
    frac = structure.frac_coords
    if not (np.all(np.isfinite(matrix)) and np.all(np.isfinite(frac))):
        raise StructureError("NaN or infinite lattice or coordinates")
    with np.errstate(over="ignore"):  # lengths beyond 1e154 A overflow to inf, which is rejected too
        longest = float(np.linalg.norm(matrix, axis=1).max())
    if longest > MAX_LENGTH:
        raise StructureError(f"lattice vector of {longest:.4g} A, longer than {MAX_LENGTH:g} A")
    farthest = float(np.abs(frac).max())
    if farthest > MAX_FRACTIONAL:
        raise StructureError(f"fractional coordinate of {farthest:.4g}, beyond +-{MAX_FRACTIONAL:g}")
    volume = abs(float(np.linalg.det(matrix)))
    if volume < 1e-6:
        raise StructureError("degenerate lattice (zero volume)")
    singular = np.linalg.svd(matrix, compute_uv=False)
    if singular[-1] < MIN_CONDITIONING * singular[0]:
        raise StructureError(
            f"near-singular lattice: smallest singular value {singular[-1] / singular[0]:.3g} of the largest, "
            f"below {MIN_CONDITIONING:g}"
        )
    # Spheres of diameter d fill at most pi / sqrt(18) of space: each atom needs d^3 / sqrt(2).
    if volume / n_sites < config.min_distance**3 / np.sqrt(2):
        raise StructureError(
            f"overlapping atoms: {n_sites} atoms in {volume:.3g} A^3 cannot all be min_distance="
            f"{config.min_distance} A apart"
        )


@contextmanager
def _pymatgen_step(what: str) -> Iterator[None]:
    """Report pymatgen's own failures on a structure as ``StructureError``; anything else propagates."""
    try:
        yield
    except _PYMATGEN_FAILURES as exc:
        raise StructureError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def _species_arrays(species: list) -> tuple[np.ndarray, np.ndarray]:
    numbers = np.empty(len(species), dtype=np.int64)
    oxidation = np.zeros(len(species))
    for k, sp in enumerate(species):
        z = getattr(sp, "Z", 0)
        if not isinstance(z, (int, np.integer)) or not 1 <= z <= MAX_Z:
            raise StructureError(f"species {sp} has no feature data (elements H to Pu, Z <= {MAX_Z}, are supported)")
        numbers[k] = z
        oxidation[k] = getattr(sp, "oxi_state", None) or 0.0
    return numbers, oxidation


class _Setting(NamedTuple):
    """The primitive cell in the basis the point set is built in, with its supercell and distances."""

    numbers: np.ndarray
    oxidation: np.ndarray
    lattice: np.ndarray
    frac_coords: np.ndarray
    matrix: np.ndarray
    distances: np.ndarray
    reduced: np.ndarray


def _primitive_setting(structure: Structure, config: PointSetConfig) -> _Setting:
    """Check ``structure``, find its primitive cell and choose the basis of the supercell reproducibly.

    pymatgen's primitive-cell search (0.25 A tolerance) finds different cells in
    different settings of one crystal, and a cell it returns may reduce further.
    So the search runs on the Niggli-reduced cell, and again on each smaller cell
    it finds (Niggli-reduced in turn) until the cell stops shrinking. The
    Niggli-reduced basis fixes the metric whatever cell the input was written in. The supercell matrix depends
    only on that metric. Where the lattice has symmetries that move the supercell
    (a cubic lattice grown 2 x 2 x 1), each distinct supercell is built and the
    one with the smallest sorted pair distances is kept; equal ones are the same
    point set up to key order.
    """
    from pymatgen.core import Structure

    _check_structure(structure, config)
    _species_arrays(structure.species)  # fail on unsupported elements before the primitive search
    with _pymatgen_step("primitive-cell search"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        primitive = Structure(structure.lattice, structure.species, structure.frac_coords).get_reduced_structure()
        for _ in range(_MAX_PRIMITIVE_STEPS):
            smaller = primitive.get_primitive_structure()
            if len(smaller) == len(primitive):
                break
            primitive = smaller.get_reduced_structure()
    numbers, oxidation = _species_arrays(primitive.species)
    lattice = primitive.lattice.matrix
    frac = primitive.cart_coords @ np.linalg.inv(lattice)
    matrix = supercell_matrix(lattice, len(numbers), config.max_atoms)
    changes = [np.eye(3, dtype=np.int64)]
    if np.prod(np.diag(matrix)) > 1:
        changes = _distinct_supercells(matrix, _metric_symmetries(lattice))
    settings = []
    for change in changes:
        moved = change @ lattice
        moved_frac = frac @ np.rint(np.linalg.inv(change))
        with _pymatgen_step("lattice reduction"):
            reduced = _reduced_basis(matrix @ moved)
        distances = _supercell_distances(moved, moved_frac, np.diag(matrix), reduced)
        settings.append(_Setting(numbers, oxidation, moved, moved_frac, matrix, distances, reduced))
    if len(settings) == 1:
        return settings[0]
    key_site = np.repeat(np.arange(len(numbers)), np.prod(np.diag(matrix)))
    return settings[_first_setting([_pair_fingerprint(s.distances, numbers, key_site) for s in settings])]


def _supercell_distances(lattice: np.ndarray, frac: np.ndarray, counts: np.ndarray, reduced: np.ndarray) -> np.ndarray:
    """Minimum-image distances from each site to each (site, translation) key, in site-major key order.

    For an upper-triangular integer supercell matrix with diagonal ``counts``, the
    box 0 <= t_k < counts[k] holds exactly one lattice translation of each coset.
    """
    translations = np.stack(np.meshgrid(*(np.arange(c) for c in counts), indexing="ij"), -1).reshape(-1, 3)
    key_frac = (frac[:, None, :] + translations[None, :, :]).reshape(-1, 3)
    distances = _shortest_images(reduced, (key_frac[None, :, :] - frac[:, None, :]) @ lattice)
    if not np.all(np.isfinite(distances)):
        raise StructureError("non-finite distances in the supercell")
    distances[np.arange(len(frac)), np.arange(len(frac)) * len(translations)] = 0.0
    return distances


def point_set_cell(structure: Structure, config: PointSetConfig | None = None) -> tuple[Structure, np.ndarray]:
    """The primitive cell in the basis [`build_point_set`][dim_sklearn.build_point_set] uses, and its supercell matrix.

    Equivalent cells of one crystal (permuted axes, another primitive or a
    conventional cell, a shifted origin) give the same cell up to a symmetry of
    the crystal, so the same point set.

    Parameters
    ----------
    structure : pymatgen.core.Structure
    config : PointSetConfig, optional

    Returns
    -------
    primitive : pymatgen.core.Structure
        Sites in the order of the point set's queries.
    supercell_matrix : ndarray of shape (3, 3), int64
        ``supercell_matrix @ primitive.lattice.matrix`` is the supercell.
    """
    from pymatgen.core import Lattice, Structure

    setting = _primitive_setting(structure, config or PointSetConfig())
    primitive = Structure(Lattice(setting.lattice), setting.numbers.tolist(), setting.frac_coords)
    return primitive, setting.matrix


def build_point_set(structure: Structure, config: PointSetConfig | None = None) -> PointSet:
    """Turn one ordered crystal into its Site-Net point set.

    The result does not depend on the cell the crystal is written in (see
    [`point_set_cell`][dim_sklearn.pointsets.point_set_cell]) beyond the order of its sites and keys.

    Parameters
    ----------
    structure : pymatgen.core.Structure
        An ordered, periodic crystal.
    config : PointSetConfig, optional
        Supercell size, site limit, feature and overlap settings.

    Returns
    -------
    PointSet

    Raises
    ------
    StructureError
        Not a Structure, not periodic in all three directions, empty,
        disordered, more sites than ``config.max_sites``, NaN or infinite
        lattice or coordinates, a lattice vector longer than ``MAX_LENGTH``,
        a fractional coordinate beyond ``MAX_FRACTIONAL``, a zero-volume or
        near-singular lattice (``MIN_CONDITIONING``), an element without
        feature data, atoms closer than ``config.min_distance``, or a failure of
        pymatgen's primitive-cell search or lattice reduction.
    """
    config = config or PointSetConfig()
    setting = _primitive_setting(structure, config)
    n_sites = len(setting.numbers)
    n_images = int(np.prod(np.diag(setting.matrix)))
    distances = setting.distances
    self_key = np.arange(n_sites) * n_images

    # Closest pair: every other key, and the shortest supercell vector (a site's own image).
    others = distances.copy()
    others[np.arange(n_sites), self_key] = np.inf
    offsets = _image_offsets()
    cell_vectors = offsets[np.any(offsets != 0, axis=1)] @ setting.reduced
    closest = min(others.min(), np.sqrt(np.min(np.sum(cell_vectors**2, axis=1))))
    if closest < config.min_distance:
        raise StructureError(
            f"overlapping atoms: closest pair {closest:.3f} A apart, below min_distance={config.min_distance} A"
        )

    features = site_property_table()[setting.numbers]
    if config.oxidation:
        features = np.concatenate([features, setting.oxidation[:, None]], axis=1)
    return PointSet(
        atomic_numbers=setting.numbers,
        site_features=features.astype(np.float32),
        distances=distances.astype(np.float32),
        key_site=np.repeat(np.arange(n_sites), n_images),
        supercell_matrix=setting.matrix,
    )


def as_structure_list(X: Any) -> list:
    """The entries of ``X`` as a list, one per structure.

    Accepts a list or tuple, a pandas Series, a one-column DataFrame, a 1-D or
    (n, 1) object array, and matminer-style 1-tuples or 1-element rows.
    """
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise ValueError(f"expected one column of structures, got a DataFrame with {X.shape[1]} columns")
        X = X.iloc[:, 0]
    if isinstance(X, pd.Series):
        entries = X.tolist()
    elif isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(f"expected a 1-D array of structures, got shape {X.shape}")
        entries = list(X)
    elif isinstance(X, (list, tuple)):
        entries = list(X)
    else:
        raise TypeError(f"expected a sequence of pymatgen Structures, got {type(X).__name__}")
    return [_unwrap(entry) for entry in entries]


def _unwrap(entry: Any) -> Any:
    """The structure inside a matminer-style 1-tuple, 1-element list or shape-(1,) array; else the entry."""
    if isinstance(entry, (tuple, list)) and len(entry) == 1:
        return entry[0]
    if isinstance(entry, np.ndarray) and entry.shape == (1,):
        return entry[0]
    return entry


@overload
def build_point_sets(
    structures: Any,
    config: PointSetConfig | None = None,
    *,
    cache: Any = None,
    ignore_errors: bool = False,
    return_errors: Literal[False] = False,
    verbose: bool = False,
    n_jobs: int | None = None,
) -> list[PointSet | None]: ...


@overload
def build_point_sets(
    structures: Any,
    config: PointSetConfig | None = None,
    *,
    cache: Any = None,
    ignore_errors: bool = False,
    return_errors: Literal[True],
    verbose: bool = False,
    n_jobs: int | None = None,
) -> tuple[list[PointSet | None], list[str | None]]: ...


def build_point_sets(
    structures: Any,
    config: PointSetConfig | None = None,
    *,
    cache: Any = None,
    ignore_errors: bool = False,
    return_errors: bool = False,
    verbose: bool = False,
    n_jobs: int | None = None,
) -> list[PointSet | None] | tuple[list[PointSet | None], list[str | None]]:
    """Point sets of many structures, in input order, with matminer's error semantics.

    Parameters
    ----------
    structures : sequence of Structure
        List, tuple, pandas Series, object array, or 1-tuples of structures.
    config : PointSetConfig, optional
    cache : PointSetCache, optional
        On-disk cache keyed by structure content; hits skip all the work.
    ignore_errors : bool, default=False
        If True, a structure that fails gives ``None`` in its place instead of
        raising; nothing is dropped.
    return_errors : bool, default=False
        Also return one error message (or None) per structure. Implies
        ``ignore_errors``.
    verbose : bool, default=False
        Show a progress bar.
    n_jobs : int or None, default=None
        Processes that build point sets (joblib's loky backend; -1: one per
        core). None or 1 builds them in this process. The structures go to the
        processes in chunks; order, results and errors are the same.

    Returns
    -------
    point_sets : list of PointSet or None
    errors : list of str or None
        Only with ``return_errors=True``.

    Raises
    ------
    StructureError
        For the first structure that fails, naming its index, unless errors are ignored.
        Only failures of the structures themselves are caught: programming errors,
        a cache folder that cannot be written, ``KeyboardInterrupt`` and a caller's
        timeout exception propagate unchanged.
    """
    point_sets: list[PointSet | None] = []
    errors: list[str | None] = []
    for chunk_point_sets, chunk_errors in _point_set_chunks(
        structures,
        config or PointSetConfig(),
        cache=cache,
        ignore_errors=ignore_errors or return_errors,
        verbose=verbose,
        n_jobs=n_jobs,
    ):
        point_sets += chunk_point_sets
        errors += chunk_errors
    return (point_sets, errors) if return_errors else point_sets


def _point_set_chunks(
    structures: Any,
    config: PointSetConfig,
    *,
    cache: Any,
    ignore_errors: bool,
    verbose: bool,
    n_jobs: int | None,
) -> Iterator[tuple[list[PointSet | None], list[str | None]]]:
    """Point sets and errors of consecutive chunks of ``structures``, in order, built here or by joblib processes.

    Worker processes always collect their errors, so that without ``ignore_errors``
    the error raised is that of the first failing structure in input order, not
    of whichever worker happened to fail first; the warnings they give (a damaged
    cache entry) are given again here, where a caller can see and filter them.
    """
    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm.auto import tqdm

    entries = as_structure_list(structures)
    workers = 1 if n_jobs is None else effective_n_jobs(n_jobs)
    size = 256 if workers == 1 else max(1, min(256, -(-len(entries) // (4 * workers))))
    starts = range(0, len(entries), size)
    with tqdm(total=len(entries), disable=not verbose, desc="point sets") as bar:
        chunks: Generator[_Chunk, None, None]
        if workers == 1:
            chunks = (
                (*_build_chunk(entries[start : start + size], start, config, cache, ignore_errors), [])
                for start in starts
            )
        else:
            chunks = Parallel(n_jobs=workers, backend="loky", return_as="generator")(
                delayed(_build_chunk_in_worker)(entries[start : start + size], start, config, cache) for start in starts
            )
        for point_sets, errors, caught in chunks:
            for warning in caught:
                warnings.warn_explicit(*warning)
            first = next((error for error in errors if error is not None), None)
            if first is not None and not ignore_errors:
                with warnings.catch_warnings():  # joblib's note on the tasks left unused
                    warnings.simplefilter("ignore", UserWarning)
                    chunks.close()
                where, reason = first.split(": ", 1)
                raise StructureError(reason, int(where.removeprefix("structure ")))
            bar.update(len(point_sets))
            yield point_sets, errors


_Caught = tuple[str, type[Warning], str, int]
"""A warning given in a worker process, as ``warnings.warn_explicit`` takes it."""
_Chunk = tuple[list[PointSet | None], list[str | None], list[_Caught]]
"""Point sets, errors and warnings of a chunk of structures."""


def _build_chunk_in_worker(entries: list, start: int, config: PointSetConfig, cache: Any) -> _Chunk:
    """``_build_chunk`` in a worker process, collecting every error, with the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        point_sets, errors = _build_chunk(entries, start, config, cache, True)
    return point_sets, errors, [(str(w.message), w.category, w.filename, w.lineno) for w in caught]


def _build_chunk(
    entries: list, start: int, config: PointSetConfig, cache: Any, ignore_errors: bool
) -> tuple[list[PointSet | None], list[str | None]]:
    """Point sets and errors of ``entries``, the structures from position ``start`` of the input on."""
    point_sets: list[PointSet | None] = []
    errors: list[str | None] = []
    for index, structure in enumerate(entries, start):
        try:
            point_set = None
            if cache is not None:
                _check_structure(structure, config)  # the cache key reads the lattice and sites
                point_set = cache.get(structure, config)
            if point_set is None:
                point_set = build_point_set(structure, config)
                if cache is not None:
                    cache.put(structure, config, point_set)
        except StructureError as exc:
            error = exc.at(index)
            if not ignore_errors:
                raise error from exc
            point_set = None
            errors.append(str(error))
        else:
            errors.append(None)
        point_sets.append(point_set)
    return point_sets, errors
