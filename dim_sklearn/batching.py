"""Batching point sets: padded tensors and a sampler with a budget of unique sites.

The unique sites of all crystals in a batch are concatenated along one axis
(the queries). Each query attends over the supercell sites of its own crystal
(the keys); the key axis is padded to the largest supercell in the batch and
masked. Per-crystal pooling uses the segment index of each site.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from .pointset import PointSet

__all__ = ["PointSetBatch", "collate_point_sets", "SiteBudgetBatchSampler"]


@dataclass
class PointSetBatch:
    """A batch of crystals as padded tensors.

    Attributes
    ----------
    site_features : Tensor of shape (n_sites, n_features), float32
        Features of every unique site of every crystal, crystal after crystal.
    key_index : Tensor of shape (n_sites, max_keys), int64
        Row of ``site_features`` that each key of each query is an image of
        (0 at padding).
    distances : Tensor of shape (n_sites, max_keys), float32
        Query-key distances in Angstrom (0 at padding).
    key_mask : Tensor of shape (n_sites, max_keys), bool
        True for real keys, False for padding.
    site_crystal : Tensor of shape (n_sites,), int64
        Crystal (position in the batch) of each site: the segment ids for pooling.
    crystal_offsets : Tensor of shape (n_crystals + 1,), int64
        Sites of crystal c are rows ``crystal_offsets[c]:crystal_offsets[c + 1]``.
    atomic_numbers : Tensor of shape (n_sites,), int64
        Element of every unique site (for models with learned element embeddings).
    """

    site_features: torch.Tensor
    key_index: torch.Tensor
    distances: torch.Tensor
    key_mask: torch.Tensor
    site_crystal: torch.Tensor
    crystal_offsets: torch.Tensor
    atomic_numbers: torch.Tensor

    @property
    def n_crystals(self) -> int:
        return int(self.crystal_offsets.shape[0]) - 1

    @property
    def n_sites(self) -> int:
        return int(self.site_features.shape[0])

    def __len__(self) -> int:
        """Number of crystals (what skorch counts as the batch size)."""
        return self.n_crystals

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PointSetBatch:
        """The same batch on another device."""
        return PointSetBatch(
            **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )

    def pin_memory(self) -> PointSetBatch:
        """Pinned host copy (used by ``DataLoader(pin_memory=True)``)."""
        return PointSetBatch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})


def collate_point_sets(point_sets: Sequence[PointSet]) -> PointSetBatch:
    """Pad and stack point sets into one :class:`PointSetBatch`.

    Parameters
    ----------
    point_sets : sequence of PointSet
        At least one.
    """
    if len(point_sets) == 0:
        raise ValueError("cannot collate an empty batch")
    sites = np.array([p.n_sites for p in point_sets])
    keys = np.array([p.n_keys for p in point_sets])
    offsets = np.concatenate([[0], np.cumsum(sites)])
    n_sites, max_keys = int(offsets[-1]), int(keys.max())

    key_index = np.zeros((n_sites, max_keys), dtype=np.int64)
    distances = np.zeros((n_sites, max_keys), dtype=np.float32)
    for p, start in zip(point_sets, offsets[:-1]):
        rows = slice(start, start + p.n_sites)
        key_index[rows, : p.n_keys] = start + p.key_site
        distances[rows, : p.n_keys] = p.distances
    site_keys = np.repeat(keys, sites)
    key_mask = np.arange(max_keys)[None, :] < site_keys[:, None]

    return PointSetBatch(
        site_features=torch.from_numpy(np.concatenate([p.site_features for p in point_sets]).astype(np.float32)),
        key_index=torch.from_numpy(key_index),
        distances=torch.from_numpy(distances),
        key_mask=torch.from_numpy(key_mask),
        site_crystal=torch.from_numpy(np.repeat(np.arange(len(point_sets)), sites)),
        crystal_offsets=torch.from_numpy(offsets.astype(np.int64)),
        atomic_numbers=torch.from_numpy(np.concatenate([p.atomic_numbers for p in point_sets]).astype(np.int64)),
    )


class SiteBudgetBatchSampler:
    """Batches of crystal indices holding at most ``max_sites`` unique sites each.

    Crystals are taken in order (shuffled each pass when ``shuffle``) and a batch
    is closed when the next crystal would take it past the budget, so the number
    of crystals per batch varies. Use as ``DataLoader(dataset, batch_sampler=...)``.
    The order of pass ``e`` depends only on the seed and ``e``; each pass moves to
    the next epoch, and :meth:`set_epoch` jumps to one (for resuming).

    Parameters
    ----------
    n_sites : sequence of int
        Unique sites of each crystal.
    max_sites : int
        Budget of unique sites per batch (1,200 for DIM pretraining in the paper).
    shuffle : bool, default=True
        New random order on every pass.
    random_state : int, numpy Generator or None
        Seed of the shuffling.

    Raises
    ------
    ValueError
        If a crystal alone has more sites than the budget.
    """

    def __init__(
        self,
        n_sites: Sequence[int],
        max_sites: int,
        shuffle: bool = True,
        random_state: int | np.random.Generator | None = None,
    ):
        self.n_sites = np.asarray(n_sites, dtype=np.int64)
        self.max_sites = int(max_sites)
        self.shuffle = shuffle
        too_big = np.flatnonzero(self.n_sites > self.max_sites)
        if too_big.size:
            raise ValueError(
                f"crystal {too_big[0]} has {self.n_sites[too_big[0]]} unique sites, "
                f"more than the batch budget max_sites={self.max_sites}"
            )
        self.seed = int(np.random.default_rng(random_state).integers(2**63))
        self.epoch = 0
        self._planned: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass the one of ``epoch``."""
        self.epoch = int(epoch)

    def _plan(self) -> list[list[int]]:
        if self._planned is not None and self._planned[0] == self.epoch:
            return self._planned[1]
        n = len(self.n_sites)
        order = np.random.default_rng((self.seed, self.epoch)).permutation(n) if self.shuffle else np.arange(n)
        batches: list[list[int]] = []
        current: list[int] = []
        used = 0
        for index in order.tolist():
            size = int(self.n_sites[index])
            if current and used + size > self.max_sites:
                batches.append(current)
                current, used = [], 0
            current.append(index)
            used += size
        if current:
            batches.append(current)
        self._planned = (self.epoch, batches)
        return batches

    def __len__(self) -> int:
        """Batches in the next pass."""
        return len(self._plan())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._plan()
        self.epoch += 1
        yield from batches
