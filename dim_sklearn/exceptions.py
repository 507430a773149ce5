"""The errors dim-sklearn raises on purpose, under one base class, and the warning it gives on a damaged cache entry.

Catch [`DimSklearnError`][dim_sklearn.DimSklearnError] to handle every one of them; each subclass also
derives from the built-in error a caller would otherwise expect (a structure
that cannot be featurised is a ``ValueError``, a missing data file a
``FileNotFoundError``, a file that cannot be written an ``OSError``).
"""

from __future__ import annotations

__all__ = [
    "DamagedCacheEntryWarning",
    "DatasetNotFoundError",
    "DimSklearnError",
    "IncompatibleModelError",
    "StructureError",
    "WriteError",
]


class DimSklearnError(Exception):
    """Base class of the errors dim-sklearn raises on purpose."""


class StructureError(DimSklearnError, ValueError):
    """A structure that cannot be turned into a point set.

    Attributes
    ----------
    index : int or None
        Position of the structure in the input (None for a single structure).
    reason : str
        What is wrong with it.
    """

    def __init__(self, reason: str, index: int | None = None):
        self.reason = reason
        self.index = index
        where = "structure" if index is None else f"structure {index}"
        super().__init__(f"{where}: {reason}")

    def at(self, index: int) -> StructureError:
        """The same error, naming the structure's position in the input."""
        return StructureError(self.reason, index)

    def __reduce__(self) -> tuple[type, tuple[str, int | None]]:
        return (StructureError, (self.reason, self.index))


class IncompatibleModelError(DimSklearnError, ValueError):
    """A saved model or pretraining checkpoint that cannot be used; the message names the file.

    Raised for files not written by dim-sklearn, a newer format, settings out of
    range, weights that do not fit the encoder described, non-finite weights,
    and damaged (truncated, altered or garbage) files.
    """


class DatasetNotFoundError(DimSklearnError, FileNotFoundError):
    """A data set file is neither in the data folder nor downloadable."""


class WriteError(DimSklearnError, OSError):
    """A file dim-sklearn writes could not be written (a full disk, no permission, ...); the message names it and why.

    Every file is written to a scratch file beside it and renamed into place
    only when whole; on this error the scratch file is removed and the file is
    left as it was (the previous version, or none).

    Attributes
    ----------
    path : str
        The file that was to be written (also ``filename``).
    reason : str
        The operating system's description of the failure (also ``strerror``),
        for example "No space left on device".
    errno : int or None
        The operating system's error number (``errno.ENOSPC``, ...).
    """

    def __init__(self, path: str, reason: str, errno: int | None = None):
        super().__init__(f"cannot write {path}: {reason}")
        self.path = self.filename = path
        self.reason = self.strerror = reason
        self.errno = errno

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"

    def __reduce__(self) -> tuple[type, tuple[str, str, int | None]]:
        return (WriteError, (self.path, self.reason, self.errno))


class DamagedCacheEntryWarning(UserWarning):
    """A point-set cache entry that fails its checks (size, format, checksum); the message names the file.

    The entry is not used: building point sets computes it again and writes it
    anew in its place.
    """
