"""Point sets streamed from the on-disk cache, so that pretraining never holds them all in memory.

[`stream_point_sets`][dim_sklearn.pointsets.stream_point_sets] builds the point sets of a structure list into a
[`PointSetCache`][dim_sklearn.PointSetCache] (reading the ones already there) and
returns a [`CachedPointSets`][dim_sklearn.pointsets.CachedPointSets]: a sequence that keeps only each point set's
cache key and site count, and reads a point set from its file when it is
indexed. The pretraining loop reads each batch's point sets this way, so its
memory does not grow with the number of structures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import numpy as np

from .build import PointSet, PointSetConfig, _point_set_chunks, as_structure_list
from .cache import PointSetCache, structure_key

__all__ = ["CachedPointSets", "stream_point_sets"]


class CachedPointSets(Sequence):
    """A sequence of point sets read one at a time from a point-set cache.

    Parameters
    ----------
    cache : PointSetCache
    keys : sequence of str
        The cache key (``dim_sklearn.pointsets.cache.structure_key``) of each point set.
    n_sites : sequence of int
        Unique sites of each point set (what batching needs without reading them).
    """

    def __init__(self, cache: PointSetCache, keys: Sequence[str], n_sites: Sequence[int] | np.ndarray):
        if len(keys) != len(n_sites):
            raise ValueError(f"{len(keys)} keys but {len(n_sites)} site counts")
        self.cache = cache
        self.keys = list(keys)
        self.n_sites = np.asarray(n_sites, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> PointSet: ...

    @overload
    def __getitem__(self, index: slice) -> CachedPointSets: ...

    def __getitem__(self, index: int | slice) -> PointSet | CachedPointSets:
        """The point set at ``index``, read from its file (a slice gives a smaller sequence, reading nothing).

        Raises
        ------
        FileNotFoundError
            Its cache entry was removed or damaged since the sequence was made.
        """
        if isinstance(index, slice):
            return CachedPointSets(self.cache, self.keys[index], self.n_sites[index])
        key = self.keys[index]
        point_set = self.cache.read(key)
        if point_set is None:
            raise FileNotFoundError(f"point set {key} is missing or damaged in {self.cache.directory}; rebuild it")
        return point_set


def stream_point_sets(
    structures: Any,
    config: PointSetConfig | None = None,
    *,
    cache: PointSetCache,
    ignore_errors: bool = False,
    verbose: bool = False,
    n_jobs: int | None = None,
) -> tuple[CachedPointSets, list[str | None]]:
    """Write the point sets of ``structures`` to ``cache`` and return the usable ones as a ``CachedPointSets``.

    Structures are built (or found in the cache) a chunk at a time, in order;
    no more than a chunk of point sets is in memory at once.

    Parameters
    ----------
    structures : sequence of Structure
    config : PointSetConfig, optional
    cache : PointSetCache
    ignore_errors : bool, default=False
        Leave out the structures that cannot be featurised instead of raising.
    verbose : bool, default=False
        Show a progress bar.
    n_jobs : int or None, default=None
        As in [`build_point_sets`][dim_sklearn.build_point_sets].

    Returns
    -------
    point_sets : CachedPointSets
        The point sets of the structures that could be featurised, in order.
    errors : list of str or None
        One per structure: why it was left out, or None.

    Raises
    ------
    StructureError
        For the first structure that fails, naming its index, unless ``ignore_errors``.
    """
    config = config or PointSetConfig()
    entries = as_structure_list(structures)
    keys: list[str] = []
    n_sites: list[int] = []
    errors: list[str | None] = []
    for chunk_point_sets, chunk_errors in _point_set_chunks(
        entries, config, cache=cache, ignore_errors=ignore_errors, verbose=verbose, n_jobs=n_jobs
    ):
        for point_set, error in zip(chunk_point_sets, chunk_errors):
            if point_set is not None:
                keys.append(structure_key(entries[len(errors)], config))
                n_sites.append(point_set.n_sites)
            errors.append(error)
    return CachedPointSets(cache, keys, n_sites), errors
