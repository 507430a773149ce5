"""Structures -> point sets -> batches: the first stage of the pipeline.

A crystal becomes a Site-Net point set (``build``: its unique sites, the sites of
a supercell and their pair distances, each site described by the per-element
properties of ``elements``); point sets are kept on disk by content
(``cache``), read back one at a time (``store``) and batched by a budget of
unique sites (``batching``). Nothing here knows about encoders, training or
estimators.
"""

from .batching import (
    DistributedSiteBudgetBatchSampler,
    PointSetBatch,
    SiteBudgetBatchSampler,
    collate_point_sets,
)
from .build import (
    MAX_ATOMS,
    MAX_SITES,
    PointSet,
    PointSetConfig,
    as_structure_list,
    build_point_set,
    build_point_sets,
    point_set_cell,
)
from .cache import PointSetCache
from .store import CachedPointSets, stream_point_sets

__all__ = [
    "MAX_ATOMS",
    "MAX_SITES",
    "CachedPointSets",
    "DistributedSiteBudgetBatchSampler",
    "PointSet",
    "PointSetBatch",
    "PointSetCache",
    "PointSetConfig",
    "SiteBudgetBatchSampler",
    "as_structure_list",
    "build_point_set",
    "build_point_sets",
    "collate_point_sets",
    "point_set_cell",
    "stream_point_sets",
]
