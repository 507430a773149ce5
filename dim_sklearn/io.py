"""Saving and loading a trained Site-Net encoder, safely.

A saved encoder is a folder with two files:

- ``encoder.safetensors``: the weights (safetensors: plain tensors, nothing
  executed on load);
- ``config.json``: the format and its version, the encoder widths, the
  estimator's parameters and training history, and the versions of
  dim-sklearn, torch and pymatgen that wrote it.

Loading checks the format, builds the encoder the JSON describes and loads the
weights strictly; any mismatch raises :class:`IncompatibleModelError`.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .nn import EncoderConfig, SiteNetEncoder

__all__ = ["FORMAT", "FORMAT_VERSION", "IncompatibleModelError", "load_encoder", "save_encoder"]

FORMAT = "dim-sklearn Site-Net encoder"
FORMAT_VERSION = 1
WEIGHTS = "encoder.safetensors"
CONFIG = "config.json"


class IncompatibleModelError(ValueError):
    """A saved model that this version of dim-sklearn cannot load."""


def _versions() -> dict[str, str]:
    out = {}
    for package in ("dim-sklearn", "torch", "pymatgen"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


def save_encoder(path: str | os.PathLike, encoder: SiteNetEncoder, metadata: dict[str, Any]) -> Path:
    """Write ``encoder`` and JSON-serialisable ``metadata`` to the folder ``path`` (created if needed)."""
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder": encoder.config.to_dict(),
        "versions": _versions(),
        **metadata,
    }
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in encoder.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": FORMAT})
    (folder / CONFIG).write_text(json.dumps(config, indent=2))
    return folder


def load_encoder(path: str | os.PathLike) -> tuple[SiteNetEncoder, dict[str, Any]]:
    """Read a folder written by :func:`save_encoder`; returns the encoder (CPU, eval mode) and the config dict.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a folder holding both files.
    IncompatibleModelError
        Not a dim-sklearn encoder, a newer format, corrupt weights, or weights
        that do not fit the encoder the config describes.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a saved dim-sklearn encoder: {name} is missing")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IncompatibleModelError(f"{folder / CONFIG} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise IncompatibleModelError(f"{folder / CONFIG} does not describe a {FORMAT}")
    if config.get("format_version") != FORMAT_VERSION:
        raise IncompatibleModelError(
            f"{folder} has format version {config.get('format_version')}; this dim-sklearn reads version "
            f"{FORMAT_VERSION} (written by {config.get('versions', {}).get('dim-sklearn', 'an unknown version')})"
        )
    try:
        # Files written before the radial-basis option hold raw-distance encoders.
        encoder = SiteNetEncoder(EncoderConfig(**{"n_rbf": 0, **config["encoder"]}))
    except (KeyError, TypeError, ValueError) as exc:
        raise IncompatibleModelError(f"{folder / CONFIG} has an unusable encoder section: {exc}") from exc
    try:
        state = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise IncompatibleModelError(f"{folder / WEIGHTS} is not a readable safetensors file: {exc}") from exc
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise IncompatibleModelError(
            f"the weights in {folder / WEIGHTS} do not fit the encoder described by {CONFIG}: {exc}"
        ) from exc
    return encoder.eval(), config

