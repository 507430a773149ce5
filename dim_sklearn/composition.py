"""Composition descriptors of structures, for the forest of ``SiteNetEnsemble`` and the head of ``SiteNetRegressor``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .pointsets import as_structure_list

__all__ = ["COMPOSITION_DESCRIPTORS", "magpie_features"]


def magpie_features(structures: Any) -> np.ndarray:
    """Magpie composition descriptors (matminer's ``ElementProperty`` preset "magpie") of structures.

    Parameters
    ----------
    structures : sequence of Structure
        A list, pandas Series or object array of pymatgen Structures.

    Returns
    -------
    ndarray of shape (n, 132)
        One row per structure; NaN where matminer has no value for an element.
    """
    from matminer.featurizers.composition import ElementProperty

    featurizer = ElementProperty.from_preset("magpie")
    featurizer.set_n_jobs(1)  # matminer's forked pool can hang once torch has started its threads
    compositions = [structure.composition for structure in as_structure_list(structures)]
    width = len(featurizer.feature_labels())
    rows = featurizer.featurize_many(compositions, ignore_errors=True, pbar=False) if compositions else []
    return np.array([row if len(row) == width else [np.nan] * width for row in rows], dtype=float).reshape(-1, width)


COMPOSITION_DESCRIPTORS: dict[str, tuple[Callable[[Any], np.ndarray], int]] = {"magpie": (magpie_features, 132)}
"""The composition descriptors by name: the function of structures and its number of columns."""
