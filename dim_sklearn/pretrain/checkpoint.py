"""The pretraining checkpoint file: the loop's whole state, with a checksum of its contents.

One file, ``checkpoint.pt``: serialised with ``torch.save`` in memory, then
written through ``dim_sklearn._utils.write_atomically`` (a killed run or a
full disk leaves the previous file whole, and a failed write raises
[`WriteError`][dim_sklearn.WriteError] naming the file and the cause), and
read back with ``weights_only=True`` (nothing in it is executed).
``load_checkpoint`` refuses, with
[`IncompatibleModelError`][dim_sklearn.IncompatibleModelError] naming the file,
one that is not the zip archive ``torch.save`` writes (a text file, an empty,
truncated or random file), a zip archive torch cannot read, one that lacks the
checksum (written by an older dim-sklearn), does not hold a checkpoint's keys,
was altered after writing or holds NaN or infinite values; an intact
checkpoint of another run is refused with a ``ValueError``.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import torch

from .._utils import write_atomically
from ..exceptions import IncompatibleModelError

__all__ = ["CHECKPOINT", "CHECKPOINT_KEYS", "checksum", "load_checkpoint", "save_checkpoint"]

CHECKPOINT = "checkpoint.pt"
"""Name of the checkpoint file inside a run's ``checkpoint_dir``."""

CHECKPOINT_KEYS = frozenset(
    {
        "fingerprint",
        "seed",
        "model",
        "optimisers",
        "history",
        "best_loss",
        "best_epoch",
        "bad_epochs",
        "best_state",
        "checksum",
    }
)
"""The keys of a checkpoint: the run's identity, the model and optimiser states, the history and the best state."""


def _digest(obj: Any, digest: Any) -> None:
    """Feed a checkpoint's nested dicts, lists, tensors and plain values into ``digest``, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(f"dict {len(obj)}".encode())
        for key in sorted(obj, key=repr):
            digest.update(repr(key).encode())
            _digest(obj[key], digest)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__} {len(obj)}".encode())
        for item in obj:
            _digest(item, digest)
    else:
        digest.update(repr(obj).encode())


def checksum(state: dict) -> str:
    """Hex digest of everything in ``state`` except its ``checksum`` entry."""
    digest = hashlib.blake2b(digest_size=16)
    _digest({k: v for k, v in state.items() if k != "checksum"}, digest)
    return digest.hexdigest()


def _non_finite(obj: Any) -> bool:
    """Whether any floating-point tensor inside ``obj`` holds NaN or infinity."""
    if isinstance(obj, torch.Tensor):
        return obj.is_floating_point() and not bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return any(_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_non_finite(v) for v in obj)
    return False


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` (the keys of ``CHECKPOINT_KEYS`` but ``checksum``) and its checksum to ``path``.

    Atomic: a failed write leaves the file that was there. The state is
    serialised in memory first, so that a failing disk is reported as the
    operating system's error (torch's own file writer reports a full disk as an
    unexplained ``RuntimeError``).

    Raises
    ------
    WriteError
        The file cannot be written (a full disk, no permission, ...); the message names it and the cause.
    """
    buffer = io.BytesIO()
    torch.save({**state, "checksum": checksum(state)}, buffer)
    write_atomically({Path(path): buffer.getvalue()})


def _is_zip(path: Path) -> bool:
    """Whether ``path`` ends with a zip archive's directory (``zipfile.is_zipfile`` raises on some damaged ones)."""
    try:
        return zipfile.is_zipfile(path)
    except zipfile.BadZipFile:
        return False


def _read(path: Path, device: torch.device, damaged: str) -> Any:
    """What ``path`` holds, read with ``weights_only=True``; any failure but the operating system's is the file's."""
    if not _is_zip(path):  # torch would read anything else as a bare pickle, failing in countless ways
        raise IncompatibleModelError(
            f"{damaged}: it cannot be read (not a whole zip archive, as torch.save writes); delete it to start afresh"
        )
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # a damaged archive fails anywhere in torch's reader and unpickler
        # torch's own message may advise weights_only=False, which would execute code from the file
        raise IncompatibleModelError(
            f"{damaged}: it cannot be read ({type(exc).__name__}); delete it to start afresh"
        ) from None


def load_checkpoint(path: str | Path, device: torch.device, fingerprint: str) -> dict:
    """The state in ``path``, after checking that it is whole, unaltered, of this run and finite.

    Parameters
    ----------
    path : path
        A file written by ``save_checkpoint``.
    device : torch.device
        Where its tensors are loaded.
    fingerprint : str
        The identity of the run that may resume from it (data and settings).

    Raises
    ------
    IncompatibleModelError
        The file is not a zip archive written by ``torch.save`` or cannot be
        read, has no checksum or a wrong one, does not hold a checkpoint's
        keys, or holds NaN or infinite values; the message names the file.
    OSError
        The operating system cannot read the file (no permission, ...).
    ValueError
        The file is intact but belongs to another run.
    """
    path = Path(path)
    damaged = f"{path} is not a usable pretraining checkpoint"
    state = _read(path, device, damaged)
    if isinstance(state, dict) and set(state) == CHECKPOINT_KEYS - {"checksum"}:
        raise IncompatibleModelError(
            f"{damaged}: it was written without a checksum (by an older dim-sklearn) and "
            "cannot be verified; delete it to start afresh"
        )
    if not isinstance(state, dict) or set(state) != CHECKPOINT_KEYS:
        raise IncompatibleModelError(f"{damaged}: it does not hold a checkpoint's contents; delete it to start afresh")
    if state["checksum"] != checksum(state):
        raise IncompatibleModelError(f"{damaged}: its checksum does not match (a damaged file); delete it")
    if state["fingerprint"] != fingerprint:
        raise ValueError(f"{path} holds a run on other data or settings; use another checkpoint_dir or delete it")
    if _non_finite([state["model"], state["best_state"], state["optimisers"]]):
        raise IncompatibleModelError(f"{damaged}: it holds NaN or infinite weights; delete it to start afresh")
    return state
