"""Small helpers shared by the modules: device resolution, seed derivation, atomic file writes."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from sklearn.utils import check_random_state

from .exceptions import WriteError

__all__ = [
    "Rule",
    "ScratchFile",
    "atomic_write",
    "boolean",
    "check_fields",
    "derive_seed",
    "integer",
    "is_int",
    "real",
    "resolve_device",
    "spawn_seeds",
    "write_atomically",
]


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


def spawn_seeds(random_state: int | np.random.RandomState | None, n: int) -> list[int]:
    """``n`` seeds below 2**31 drawn from a scikit-learn ``random_state`` (model initialisation, training, ...)."""
    rng = check_random_state(random_state)
    return [int(s) for s in rng.randint(0, 2**31 - 1, size=n)]


Rule = tuple[str, Callable[[Any], bool]]
"""What a field must be, in words, and the test of a value."""


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer(low: int, high: int | None = None) -> Rule:
    """An integer in ``[low, high]`` (no upper bound when ``high`` is None)."""
    words = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    return words, lambda v: is_int(v) and low <= v and (high is None or v <= high)


def real(low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """A finite number between ``low`` and ``high`` (each bound closed unless said open; no upper bound if None)."""
    if high is None:
        words = f"a finite number {'>' if low_open else '>='} {low}"
    else:
        words = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def ok(v: Any) -> bool:
        if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, (bool, np.bool_)):
            return False
        if not np.isfinite(v) or v < low or (low_open and v == low):
            return False
        return bool(high is None or v < high or (v == high and not high_open))

    return words, ok


boolean: Rule = ("True or False", lambda v: isinstance(v, (bool, np.bool_)))
"""A bool."""

seed: Rule = (
    "None, an integer from 0 to 2**32 - 1 or a numpy RandomState",
    lambda v: v is None or (is_int(v) and 0 <= v < 2**32) or isinstance(v, np.random.RandomState),
)
"""What scikit-learn accepts as ``random_state``."""


def optional(rule: Rule) -> Rule:
    """None, or a value that passes ``rule``."""
    words, ok = rule
    return f"None or {words}", lambda v: v is None or ok(v)


def either(*rules: Rule) -> Rule:
    """A value that passes any of ``rules``."""
    return " or ".join(words for words, _ in rules), lambda v: any(ok(v) for _, ok in rules)


def one_of(*values: str) -> Rule:
    """One of the strings ``values``."""
    words = ", ".join(map(repr, values))
    return (f"one of {words}" if len(values) > 1 else words), lambda v: isinstance(v, str) and v in values


def instance_of(words: str, *types: type) -> Rule:
    """An instance of one of ``types``, described as ``words``."""
    return words, lambda v: isinstance(v, types)


def check_fields(config: Any, **rules: Rule) -> None:
    """Check the named fields of a settings object; one ``ValueError`` lists every field that breaks its rule."""
    problems = [
        f"{name} must be {words}, got {getattr(config, name)!r}"
        for name, (words, ok) in rules.items()
        if not ok(getattr(config, name))
    ]
    if problems:
        raise ValueError(f"{type(config).__name__}: {'; '.join(problems)}")


@contextmanager
def _reported_as_write_error(target: Path) -> Iterator[None]:
    """Re-raise the operating system's failures inside the block as ``WriteError`` naming ``target``."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(str(target), exc.strerror or str(exc), exc.errno) from exc


class ScratchFile:
    """The write end of ``atomic_write``: bytes written go to disk at once, failures name the target file.

    Attributes
    ----------
    path : Path
        The scratch file (the target itself when that is a pipe or a device).
    target : Path
        The file being written.
    """

    def __init__(self, handle: IO[bytes], path: Path, target: Path):
        self._handle = handle
        self.path = path
        self.target = target

    def write(self, data: bytes) -> None:
        """Write and flush ``data``; a failure (a full disk, ...) raises ``WriteError`` naming the target."""
        with _reported_as_write_error(self.target):
            self._handle.write(data)
            self._handle.flush()


def _is_stream(path: Path) -> bool:
    """Whether ``path`` is an existing pipe or device (``/dev/stdout``), written in place: no file to replace."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[ScratchFile]:
    """Write the file ``path`` through a uniquely named scratch file beside it, renamed into place on success.

    Readers see the old file or the whole new one, never a part; two writers
    sharing a folder never share a scratch file. The operating system's
    failures (a full disk, a folder that cannot be created or written, ...)
    raise [`WriteError`][dim_sklearn.WriteError] naming ``path``; on any exception the scratch
    file is removed and ``path`` is left as it was. A pipe or a device (for
    example ``/dev/stdout``) is written in place.
    """
    target = Path(path)
    if _is_stream(target):
        scratch = target
        with _reported_as_write_error(target):
            handle = open(target, "wb")  # noqa: SIM115 (closed below, after the caller's writes)
    else:
        with _reported_as_write_error(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        scratch = Path(name)
        handle = os.fdopen(fd, "wb")
    try:
        yield ScratchFile(handle, scratch, target)
        with _reported_as_write_error(target):
            handle.close()
            if scratch != target:
                os.replace(scratch, target)
    except BaseException:
        with contextlib.suppress(OSError):
            handle.close()
        if scratch != target:
            with contextlib.suppress(OSError):
                scratch.unlink(missing_ok=True)
        raise


def write_atomically(files: Mapping[Path, bytes]) -> None:
    """Write several files (path -> contents) so that none is replaced unless every one was written whole.

    Each goes through ``atomic_write``; the scratch files are all written
    before the first is renamed into place, so a full disk leaves every target
    as it was.

    Raises
    ------
    WriteError
        The operating system's failure, naming the file it hit.
    """
    with contextlib.ExitStack() as stack:
        for path, data in files.items():
            stack.enter_context(atomic_write(path)).write(data)
