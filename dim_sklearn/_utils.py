"""Small helpers shared by the modules: device resolution, seed derivation, atomic file writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

__all__ = ["atomic_write", "derive_seed", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU; anything else as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed drawn from ``parts`` (a run's seed and the stream's labels): independent streams, reproducible.

    numpy's ``SeedSequence`` reads trailing zeros as absent, so ``(s, 2)`` and
    ``(s, 2, 0)`` give the same seed: label streams with non-zero last parts.
    """
    return int(np.random.default_rng(list(parts)).integers(2**63))


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a uniquely named scratch file beside ``path``; on success it replaces ``path`` in one step.

    Readers see the old file or the whole new one, never a part; two writers
    sharing a folder never share a scratch file. On an exception the scratch
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise

