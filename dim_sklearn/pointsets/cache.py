"""On-disk cache of point sets, keyed by structure content and configuration.

Each point set is one small binary file: a fixed header, a BLAKE2b checksum of
everything else in the file, and raw little-endian arrays, read back with a
single ``numpy.frombuffer``: no pickling, so a cache folder from elsewhere
cannot execute code. An entry whose size, format or checksum is wrong (a
truncated file, one flipped bit anywhere) is never used: it gives a
[`DamagedCacheEntryWarning`][dim_sklearn.DamagedCacheEntryWarning] naming the file, and the point
set is built again and written in its place. Writes go to a temporary file
that is renamed into place, so concurrent writers, killed runs and full disks
never leave a torn entry; a write that fails raises
[`WriteError`][dim_sklearn.WriteError] naming the entry's file.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._utils import write_atomically
from ..exceptions import DamagedCacheEntryWarning
from .build import CONSTRUCTION_VERSION, PointSet, PointSetConfig

if TYPE_CHECKING:
    from pymatgen.core import Structure

_FORMAT_VERSION = 2
_HEADER = 16  # bytes: int32 version, n_sites, n_keys, n_features
_CHECKSUM = 16  # bytes: BLAKE2b digest of the header and the arrays that follow the checksum


def structure_key(structure: Structure, config: PointSetConfig) -> str:
    """Hex digest identifying a structure's content under a configuration.

    Covers the lattice, the fractional coordinates, the species (as written,
    oxidation states included), every configuration field, the version of the
    point-set construction and the file format.
    """
    digest = hashlib.blake2b(digest_size=20)
    digest.update(json.dumps([_FORMAT_VERSION, CONSTRUCTION_VERSION, config.to_dict()], sort_keys=True).encode())
    digest.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    digest.update(" ".join(str(sp) for sp in structure.species).encode())
    return digest.hexdigest()


class PointSetCache:
    """A folder of cached point sets.

    Parameters
    ----------
    directory : str or Path
        Created if missing. Safe to share between processes and runs.

    Examples
    --------
    >>> cache = PointSetCache("~/.cache/dim-sklearn")          # doctest: +SKIP
    >>> point_sets = build_point_sets(structures, cache=cache)  # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory).expanduser()

    def __repr__(self) -> str:
        return f"PointSetCache({str(self.directory)!r})"

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.bin"

    def get(self, structure: Structure, config: PointSetConfig) -> PointSet | None:
        """The cached point set of ``structure``, or None on a miss or a damaged entry (see ``read``)."""
        return self.read(structure_key(structure, config))

    def read(self, key: str) -> PointSet | None:
        """The point set stored under ``key`` (a ``structure_key``), or None on a miss or a damaged entry.

        Warns
        -----
        DamagedCacheEntryWarning
            The entry's size, format or checksum is wrong; it is not used.
        """
        path = self._path(key)
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return _decode(raw)
        except ValueError as exc:
            warnings.warn(
                f"{path} is a damaged point-set cache entry ({exc}); it is not used",
                DamagedCacheEntryWarning,
                stacklevel=2,
            )
            return None

    def put(self, structure: Structure, config: PointSetConfig, point_set: PointSet) -> None:
        """Store ``point_set`` as the entry of ``structure``.

        Raises
        ------
        WriteError
            The entry cannot be written (a full disk, a folder without write
            permission, ...); the message names the file. No part of it is left.
        """
        write_atomically({self._path(structure_key(structure, config)): _encode(point_set)})


def _checksum(header: bytes | memoryview, arrays: bytes | memoryview) -> bytes:
    digest = hashlib.blake2b(header, digest_size=_CHECKSUM)
    digest.update(arrays)
    return digest.digest()


def _encode(p: PointSet) -> bytes:
    header = np.array([_FORMAT_VERSION, p.n_sites, p.n_keys, p.site_features.shape[1]], dtype="<i4").tobytes()
    parts = [
        p.supercell_matrix.astype("<i4").ravel(),
        p.atomic_numbers.astype("<i4"),
        p.key_site.astype("<i4"),
        p.site_features.astype("<f4").ravel(),
        p.distances.astype("<f4").ravel(),
    ]
    arrays = b"".join(part.tobytes() for part in parts)
    return header + _checksum(header, arrays) + arrays


def _decode(raw: bytes) -> PointSet:
    """The point set of an entry's bytes; ``ValueError`` saying what is wrong with a damaged one."""
    start = _HEADER + _CHECKSUM
    if len(raw) < start:
        raise ValueError(f"truncated: {len(raw)} bytes")
    view = memoryview(raw)
    if _checksum(view[:_HEADER], view[start:]) != raw[_HEADER:start]:
        raise ValueError("checksum mismatch")
    version, n_sites, n_keys, n_features = (int(v) for v in np.frombuffer(raw, "<i4", 4))
    expected = start + 4 * (9 + n_sites + n_keys + n_sites * n_features + n_sites * n_keys)
    if version != _FORMAT_VERSION or len(raw) != expected:
        raise ValueError(f"format version {version}, {len(raw)} bytes")
    ints = np.frombuffer(raw, "<i4", 9 + n_sites + n_keys, start)
    floats = np.frombuffer(raw, "<f4", offset=start + 4 * ints.size)
    return PointSet(
        atomic_numbers=ints[9 : 9 + n_sites].astype(np.int64),
        site_features=floats[: n_sites * n_features].reshape(n_sites, n_features).copy(),
        distances=floats[n_sites * n_features :].reshape(n_sites, n_keys).copy(),
        key_site=ints[9 + n_sites :].astype(np.int64),
        supercell_matrix=ints[:9].reshape(3, 3).astype(np.int64),
    )
