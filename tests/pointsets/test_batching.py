import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dim_sklearn import build_point_sets
from dim_sklearn.pointsets.batching import (
    DistributedSiteBudgetBatchSampler,
    SiteBudgetBatchSampler,
    collate_point_sets,
    merge_small_batches,
)


def test_collated_distinct_distances_are_those_of_the_padded_batch(mp_cs419, rocksalt):
    """Merged from each point set's distinct distances: the sorted distinct values and positions of every pair."""
    point_sets = build_point_sets([mp_cs419[0][0], rocksalt, mp_cs419[0][2], mp_cs419[0][5]])
    for batch_sets in (point_sets, point_sets[1:2], point_sets[::-1]):
        batch = collate_point_sets(batch_sets)
        values, inverse = np.unique(batch.distances.numpy(), return_inverse=True)
        np.testing.assert_array_equal(batch.distance_values.numpy(), values)
        np.testing.assert_array_equal(batch.distance_index.numpy(), inverse.reshape(batch.distances.shape))
        assert batch.distance_index.dtype == torch.int64
        assert torch.equal(batch.distance_values[batch.distance_index], batch.distances)


def test_collate_pads_masks_and_segments_a_mixed_batch(mp_cs419, rocksalt):
    structures = [mp_cs419[0][0], rocksalt, mp_cs419[0][2]]
    point_sets = build_point_sets(structures)
    batch = collate_point_sets(point_sets)
    sites = [p.n_sites for p in point_sets]
    keys = [p.n_keys for p in point_sets]
    assert batch.n_crystals == 3 and batch.n_sites == sum(sites)
    assert batch.key_index.shape == batch.distances.shape == batch.key_mask.shape == (sum(sites), max(keys))
    assert batch.crystal_offsets.tolist() == [0, *np.cumsum(sites).tolist()]
    assert batch.site_crystal.tolist() == np.repeat(np.arange(3), sites).tolist()
    assert batch.key_mask.dtype == torch.bool and batch.key_index.dtype == torch.int64
    for c, p in enumerate(point_sets):
        rows = slice(int(batch.crystal_offsets[c]), int(batch.crystal_offsets[c + 1]))
        mask = batch.key_mask[rows]
        assert mask[:, : p.n_keys].all() and not mask[:, p.n_keys :].any()
        np.testing.assert_array_equal(batch.distances[rows, : p.n_keys].numpy(), p.distances)
        assert (batch.distances[rows, p.n_keys :] == 0).all() and (batch.key_index[rows, p.n_keys :] == 0).all()
        # keys gather the right unique site's features, and stay inside their own crystal
        gathered = batch.site_features[batch.key_index[rows, : p.n_keys]]
        np.testing.assert_array_equal(gathered[0].numpy(), p.site_features[p.key_site])
        assert batch.site_crystal[batch.key_index[rows][mask]].eq(c).all()
    np.testing.assert_array_equal(batch.site_features.numpy(), np.concatenate([p.site_features for p in point_sets]))
    moved = batch.to("cpu")
    assert torch.equal(moved.distances, batch.distances)
    with pytest.raises(ValueError):
        collate_point_sets([])


def test_sampler_never_exceeds_budget_and_covers_every_crystal_once():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 60, size=500)
    sampler = SiteBudgetBatchSampler(sizes, max_sites=120, shuffle=True, random_state=0)
    passes = []
    for _ in range(3):
        n_batches = len(sampler)
        batches = list(sampler)
        assert len(batches) == n_batches
        assert all(sizes[b].sum() <= 120 for b in batches)
        # a batch closes only when the next crystal would not fit
        assert all(sizes[a].sum() + sizes[b[0]] > 120 for a, b in itertools.pairwise(batches))
        assert sorted(i for b in batches for i in b) == list(range(500))
        passes.append([i for b in batches for i in b])
    assert passes[0] != passes[1]
    again = SiteBudgetBatchSampler(sizes, max_sites=120, shuffle=True, random_state=0)
    assert [i for b in again for i in b] == passes[0]
    ordered = list(SiteBudgetBatchSampler(sizes, 120, shuffle=False))
    assert [i for b in ordered for i in b] == list(range(500))


def test_sampler_rejects_a_crystal_larger_than_the_budget():
    with pytest.raises(ValueError, match="crystal 1 has 30 unique sites"):
        SiteBudgetBatchSampler([3, 30, 4], max_sites=20)


def test_dataloader_with_sampler_and_collate(phonons):
    point_sets = build_point_sets(phonons[0][:60])
    sampler = SiteBudgetBatchSampler([p.n_sites for p in point_sets], max_sites=100, random_state=1)
    loader = DataLoader(point_sets, batch_sampler=sampler, collate_fn=collate_point_sets)
    seen = 0
    for batch in loader:
        assert batch.n_sites <= 100
        seen += batch.n_crystals
    assert seen == 60


def test_merge_small_batches_gives_every_batch_the_minimum_of_crystals():
    assert merge_small_batches([[0], [1, 2], [3, 4, 5], [6]]) == [[0, 1, 2], [3, 4, 5, 6]]
    assert merge_small_batches([[0, 1], [2, 3, 4], [5]], min_crystals=3) == [[0, 1, 2, 3, 4, 5]]


def test_distributed_sampler_shares_out_the_single_process_batches():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, size=400)
    single = SiteBudgetBatchSampler(sizes, max_sites=240, random_state=5)
    ranks = [DistributedSiteBudgetBatchSampler(sizes, 240, num_replicas=3, rank=r, random_state=5) for r in range(3)]
    one = DistributedSiteBudgetBatchSampler(sizes, 240, random_state=5)
    for epoch in (1, 2, 7):
        single.set_epoch(epoch)
        batches = list(single)
        plan = merge_small_batches(batches, 6)
        for sampler in (*ranks, one):
            sampler.set_epoch(epoch)
        shares = [list(sampler) for sampler in ranks]
        assert list(one) == merge_small_batches(batches)  # one rank: the single-process batches
        assert len(shares[0]) == len(shares[1]) == len(shares[2]) == len(plan) == len(ranks[0])
        for step, batch in enumerate(plan):
            parts = [share[step] for share in shares]
            assert [i for part in parts for i in part] == batch  # the step's batch, in order
            assert all(len(part) >= 2 for part in parts)
            part_sites = [sizes[part].sum() for part in parts]
            assert max(part_sites) - min(part_sites) <= 2 * sizes[batch].max()  # cut near a third of the sites each
    with pytest.raises(ValueError, match="rank must be in"):
        DistributedSiteBudgetBatchSampler(sizes, 240, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="4 ranks need at least 8 crystals"):
        DistributedSiteBudgetBatchSampler(sizes[:7], 240, num_replicas=4)
