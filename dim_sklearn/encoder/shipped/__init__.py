"""Encoders that ship with the package, loaded by ``DeepInfoMaxFeaturizer.from_pretrained``.

Each is a [`PretrainedEncoder`][dim_sklearn.PretrainedEncoder] folder beside this module, in
the format of ``dim_sklearn.encoder.format`` (``encoder.safetensors`` + ``config.json``),
whose provenance records the versions that trained it, the settings, the
history and, in its ``metadata``, the pretraining corpus, its size and hash,
the epochs and the held-out DIM terms.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_PRETRAINED", "list_pretrained", "pretrained_path"]

DEFAULT_PRETRAINED = "dim-38k"
"""Site-Net encoder pretrained with Deep InfoMax on 38,109 structures (scripts/pretrain_shipped.py)."""

_HERE = Path(__file__).parent


def list_pretrained() -> list[str]:
    """Names of the shipped encoders."""
    return sorted(p.name for p in _HERE.iterdir() if (p / "config.json").is_file())


def pretrained_path(name: str = DEFAULT_PRETRAINED) -> Path:
    """Folder of the shipped encoder ``name``.

    Raises
    ------
    ValueError
        No shipped encoder has that name.
    """
    folder = _HERE / name
    if not (folder / "config.json").is_file():
        raise ValueError(f"no shipped encoder named {name!r}; shipped: {', '.join(list_pretrained()) or 'none'}")
    return folder
