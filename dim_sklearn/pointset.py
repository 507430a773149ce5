"""Crystal -> Site-Net point set (docs/method.md, section 1).

A crystal becomes a set of *queries*, its unique (primitive-cell) sites, and
*keys*, every site of a near-orthorhombic supercell of at most ``max_atoms``
atoms. Each key is an image of one unique site; :attr:`PointSet.key_site`
states which, explicitly. Pair features are minimum-image distances inside the
supercell, in Angstrom.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import scipy.linalg

from ._utils import boolean, check_fields, integer, real
from .elements import MAX_Z, SITE_PROPERTIES, site_property_table
from .exceptions import StructureError

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "MAX_ATOMS",
    "MAX_FRACTIONAL",
    "MAX_LENGTH",
    "MIN_CONDITIONING",
    "PointSet",
    "PointSetConfig",
    "StructureError",
    "as_structure_list",
    "build_point_set",
    "build_point_sets",
    "minimum_image_distances",
    "supercell_matrix",
]


MAX_ATOMS = 1000
"""Largest accepted ``max_atoms`` (supercell size)."""
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
_PYMATGEN_FAILURES = (ValueError, ArithmeticError, IndexError)
"""What pymatgen raises on a structure it cannot process (numpy's LinAlgError is a ValueError)."""


@dataclass(frozen=True)
class PointSetConfig:
    """How crystals become point sets.

    Parameters
    ----------
    max_atoms : int, default=50
        Largest supercell (N), at most :data:`MAX_ATOMS`. A primitive cell of
        more than ``max_atoms / 2`` sites is used as is.
    max_sites : int, default=256
        Largest number of sites accepted in the input cell, checked before the
        primitive-cell search (whose cost grows with about the cube of the
        site count); larger crystals raise :class:`StructureError`. The default
        admits every structure of the real data sets (up to 200 sites).
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

    def __post_init__(self) -> None:
        check_fields(
            self, max_atoms=integer(1, MAX_ATOMS), max_sites=integer(1), oxidation=boolean, min_distance=real(0)
        )

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


def supercell_matrix(lattice: np.ndarray, n_sites: int, max_atoms: int) -> np.ndarray:
    """Integer matrix of the near-orthorhombic supercell of at most ``max_atoms`` sites.

    The row-vector lattice L is RQ-decomposed (L = R Q); the unit upper-triangular
    shear S = diag(R) R^-1 makes S L orthorhombic. Starting from one repetition per
    axis, the axis whose length ``counts[k] * |R_kk|`` is shortest is grown by one
    while ``prod(counts) * n_sites <= max_atoms``. The result is
    ``rint(diag(counts) @ S)``, whose determinant is ``prod(counts)``.

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
        k = int(np.argmin(counts * extent))
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
    """Report pymatgen's own failures on a structure as :class:`StructureError`; anything else propagates."""
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


def build_point_set(structure: Structure, config: PointSetConfig | None = None) -> PointSet:
    """Turn one ordered crystal into its Site-Net point set.

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
        lattice or coordinates, a lattice vector longer than :data:`MAX_LENGTH`,
        a fractional coordinate beyond :data:`MAX_FRACTIONAL`, a zero-volume or
        near-singular lattice (:data:`MIN_CONDITIONING`), an element without
        feature data, atoms closer than ``config.min_distance``, or a failure of
        pymatgen's primitive-cell search.
    """
    from pymatgen.core import Structure

    config = config or PointSetConfig()
    _check_structure(structure, config)
    _species_arrays(structure.species)  # fail on unsupported elements before the primitive search
    with _pymatgen_step("primitive-cell search"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bare = Structure(structure.lattice, structure.species, structure.frac_coords)
        primitive = bare.get_primitive_structure()
    numbers, oxidation = _species_arrays(primitive.species)
    n_sites = len(numbers)

    lattice = primitive.lattice.matrix
    matrix = supercell_matrix(lattice, n_sites, config.max_atoms)
    counts = np.diag(matrix)
    # For an upper-triangular integer matrix, the box 0 <= t_k < counts[k]
    # holds exactly one lattice translation of each supercell coset.
    translations = np.stack(np.meshgrid(*(np.arange(c) for c in counts), indexing="ij"), -1).reshape(-1, 3)
    frac = primitive.frac_coords
    key_frac = (frac[:, None, :] + translations[None, :, :]).reshape(-1, 3)  # site-major
    key_site = np.repeat(np.arange(n_sites), len(translations))
    vectors = (key_frac[None, :, :] - frac[:, None, :]) @ lattice
    with _pymatgen_step("lattice reduction"):
        reduced = _reduced_basis(matrix @ lattice)
    distances = _shortest_images(reduced, vectors)
    if not np.all(np.isfinite(distances)):
        raise StructureError("non-finite distances in the supercell")
    self_key = np.arange(n_sites) * len(translations)
    distances[np.arange(n_sites), self_key] = 0.0

    # Closest pair: every other key, and the shortest supercell vector (a site's own image).
    others = distances.copy()
    others[np.arange(n_sites), self_key] = np.inf
    offsets = _image_offsets()
    cell_vectors = offsets[np.any(offsets != 0, axis=1)] @ reduced
    closest = min(others.min(), np.sqrt(np.min(np.sum(cell_vectors**2, axis=1))))
    if closest < config.min_distance:
        raise StructureError(
            f"overlapping atoms: closest pair {closest:.3f} A apart, below min_distance={config.min_distance} A"
        )

    features = site_property_table()[numbers]
    if config.oxidation:
        features = np.concatenate([features, oxidation[:, None]], axis=1)
    return PointSet(
        atomic_numbers=numbers,
        site_features=features.astype(np.float32),
        distances=distances.astype(np.float32),
        key_site=key_site,
        supercell_matrix=matrix,
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
    of whichever worker happened to fail first.
    """
    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm.auto import tqdm

    entries = as_structure_list(structures)
    workers = 1 if n_jobs is None else effective_n_jobs(n_jobs)
    size = 256 if workers == 1 else max(1, min(256, -(-len(entries) // (4 * workers))))
    starts = range(0, len(entries), size)
    with tqdm(total=len(entries), disable=not verbose, desc="point sets") as bar:
        if workers == 1:
            chunks = (
                _build_chunk(entries[start : start + size], start, config, cache, ignore_errors) for start in starts
            )
        else:
            chunks = Parallel(n_jobs=workers, backend="loky", return_as="generator")(
                delayed(_build_chunk)(entries[start : start + size], start, config, cache, True) for start in starts
            )
        for chunk in chunks:
            first = next((error for error in chunk[1] if error is not None), None)
            if first is not None and not ignore_errors:
                with warnings.catch_warnings():  # joblib's note on the tasks left unused
                    warnings.simplefilter("ignore", UserWarning)
                    chunks.close()
                where, reason = first.split(": ", 1)
                raise StructureError(reason, int(where.removeprefix("structure ")))
            bar.update(len(chunk[0]))
            yield chunk


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
