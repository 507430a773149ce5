"""Batching point sets: padded tensors and a sampler with a budget of unique sites.

The unique sites of all crystals in a batch are concatenated along one axis
(the queries). Each query attends over the supercell sites of its own crystal
(the keys); the key axis is padded to the largest supercell in the batch and
masked. Per-crystal pooling uses the segment index of each site.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from itertools import pairwise

import numpy as np
import torch

from .build import PointSet

__all__ = [
    "DistributedSiteBudgetBatchSampler",
    "PointSetBatch",
    "SiteBudgetBatchSampler",
    "collate_point_sets",
    "merge_small_batches",
]


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
    distance_values : Tensor of shape (n_distances,), float32
        The distinct values of ``distances``, sorted. A crystal holds far fewer
        distinct distances than pairs (symmetry-equivalent pairs share one), so
        networks embed each distance once per batch and gather the embeddings.
    distance_index : Tensor of shape (n_sites, max_keys), int64
        Position of each entry of ``distances`` in ``distance_values``.
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
    distance_values: torch.Tensor
    distance_index: torch.Tensor
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
    """Pad and stack point sets into one ``PointSetBatch``.

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
    # The batch's distinct distances merged from each point set's (and the padding's 0): the same values and
    # positions as np.unique of the padded array, without sorting every pair of every batch.
    codes = [p.distance_codes for p in point_sets]
    padding = [np.zeros(1, np.float32)] if keys.min() < max_keys else []
    distance_values = np.unique(np.concatenate([values for values, _ in codes] + padding))
    distance_index = np.full((n_sites, max_keys), np.searchsorted(distance_values, 0.0), dtype=np.int64)
    for p, (values, inverse), start in zip(point_sets, codes, offsets[:-1]):
        rows = slice(start, start + p.n_sites)
        key_index[rows, : p.n_keys] = start + p.key_site
        distances[rows, : p.n_keys] = p.distances
        distance_index[rows, : p.n_keys] = np.searchsorted(distance_values, values)[inverse]
    site_keys = np.repeat(keys, sites)
    key_mask = np.arange(max_keys)[None, :] < site_keys[:, None]

    return PointSetBatch(
        site_features=torch.from_numpy(np.concatenate([p.site_features for p in point_sets]).astype(np.float32)),
        key_index=torch.from_numpy(key_index),
        distances=torch.from_numpy(distances),
        distance_values=torch.from_numpy(distance_values),
        distance_index=torch.from_numpy(distance_index),
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
    the next epoch, and ``set_epoch`` jumps to one (for resuming).

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
        n_sites: Sequence[int] | np.ndarray,
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


def merge_small_batches(batches: Iterable[Sequence[int]], min_crystals: int = 2) -> list[list[int]]:
    """Merge every batch of fewer than ``min_crystals`` crystals into a neighbour.

    DIM needs two crystals per batch. A crystal larger than half the site budget
    can be alone in its batch; it then joins the batch before it (or, first in
    the pass, the one after), which passes the budget by at most that crystal's
    sites.
    """
    merged: list[list[int]] = []
    for batch in batches:
        if merged and (len(batch) < min_crystals or len(merged[-1]) < min_crystals):
            merged[-1] = merged[-1] + list(batch)
        else:
            merged.append(list(batch))
    return merged


def _split_by_sites(batch: list[int], n_sites: np.ndarray, parts: int) -> list[list[int]]:
    """``batch`` cut into ``parts`` runs of nearly equal sites, at least two crystals each, in order."""
    cumulative = np.cumsum(n_sites[batch])
    cuts = [0]
    for k in range(1, parts):
        target = cumulative[-1] * k / parts
        cut = int(np.searchsorted(cumulative, target)) + 1  # crystals up to the one that reaches the target
        if cut > 1 and target - cumulative[cut - 2] < cumulative[cut - 1] - target:
            cut -= 1  # the cut before that crystal is nearer
        cuts.append(min(max(cut, cuts[-1] + 2), len(batch) - 2 * (parts - k)))
    cuts.append(len(batch))
    return [batch[a:b] for a, b in pairwise(cuts)]


class DistributedSiteBudgetBatchSampler:
    """One rank's share of every batch of a ``SiteBudgetBatchSampler``, for data-parallel training.

    Every rank plans the same passes as ``SiteBudgetBatchSampler(n_sites,
    max_sites, shuffle, random_state)``: same order, same batches of at most
    ``max_sites`` sites (so a step of all ranks together sees what one step of a
    single process sees). A batch of fewer than ``2 * num_replicas`` crystals is
    merged into a neighbour (``merge_small_batches``); then each batch is cut,
    in order, into ``num_replicas`` runs of nearly equal sites with at least two
    crystals each, and rank ``r`` takes run ``r``. Every rank thus takes the same
    number of batches per pass, about ``max_sites / num_replicas`` sites each.
    With ``num_replicas=1`` the batches are those of the single-process sampler
    after ``merge_small_batches``.

    Parameters
    ----------
    n_sites : sequence of int
        Unique sites of each crystal; at least ``2 * num_replicas`` crystals.
    max_sites : int
        Budget of unique sites of a step, all ranks together.
    num_replicas : int, default=1
        Number of ranks.
    rank : int, default=0
        This rank, in ``[0, num_replicas)``.
    shuffle : bool, default=True
    random_state : int, numpy Generator or None
        Seed of the shuffling; the same on every rank.
    """

    def __init__(
        self,
        n_sites: Sequence[int] | np.ndarray,
        max_sites: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        random_state: int | np.random.Generator | None = None,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        if len(n_sites) < 2 * num_replicas:
            raise ValueError(
                f"{num_replicas} ranks need at least {2 * num_replicas} crystals (two per rank and "
                f"batch), got {len(n_sites)}"
            )
        self.sampler = SiteBudgetBatchSampler(n_sites, max_sites, shuffle=shuffle, random_state=random_state)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass the one of ``epoch``."""
        self.sampler.set_epoch(epoch)

    def _plan(self) -> list[list[int]]:
        batches = merge_small_batches(self.sampler._plan(), 2 * self.num_replicas)
        if self.num_replicas == 1:
            return batches
        return [_split_by_sites(batch, self.sampler.n_sites, self.num_replicas)[self.rank] for batch in batches]

    def __len__(self) -> int:
        """Batches of this rank in the next pass (the same on every rank)."""
        return len(self._plan())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._plan()
        self.sampler.epoch += 1
        yield from batches
