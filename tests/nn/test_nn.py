import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dim_sklearn import build_point_sets
from dim_sklearn.nn import DeepInfoMax, EncoderConfig, SiteNetEncoder, cyclic_key_index, partner_sites
from dim_sklearn.nn.activations import mish, mish_plain
from dim_sklearn.nn.encoder import RowChunks
from dim_sklearn.pointsets import collate_point_sets


@pytest.fixture(scope="module")
def point_sets(mp_cs419):
    return build_point_sets(mp_cs419[0][:12])


@pytest.fixture
def model():
    torch.manual_seed(0)
    return DeepInfoMax(SiteNetEncoder())


def test_encoder_size_and_output_shape(point_sets):
    torch.manual_seed(0)
    encoder = SiteNetEncoder()
    assert 55_000 < sum(p.numel() for p in encoder.parameters()) < 65_000  # "about 60k"
    out = encoder(collate_point_sets(point_sets))
    assert out.shape == (12, 64) and torch.isfinite(out).all()
    wide = SiteNetEncoder(EncoderConfig(width=32, local_dim=16, global_dim=8))
    assert wide(collate_point_sets(point_sets)).shape == (12, 8)


@pytest.mark.parametrize("n_blocks", [1, 2])
def test_crystal_vector_does_not_depend_on_the_rest_of_the_batch(point_sets, n_blocks):
    """Padding, masking and pooling keep crystals apart: a crystal's vector is the same alone or in any batch."""
    torch.manual_seed(0)
    encoder = SiteNetEncoder(EncoderConfig(n_blocks=n_blocks)).eval()
    with torch.no_grad():
        together = encoder(collate_point_sets(point_sets))
        alone = torch.cat([encoder(collate_point_sets([p])) for p in point_sets])
        reversed_ = encoder(collate_point_sets(point_sets[::-1])).flip(0)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(together, reversed_, rtol=1e-5, atol=1e-5)


def test_mish_matches_torch_forward_and_gradient():
    x = torch.linspace(-60, 60, 20001, dtype=torch.float64, requires_grad=True)
    ours, theirs = mish(x), F.mish(x)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(theirs.sum(), x)[0])
    assert torch.autograd.gradcheck(mish, torch.randn(30, dtype=torch.float64, requires_grad=True))
    plain = mish_plain(x)  # the formula the compiled blocks use
    torch.testing.assert_close(plain, F.mish(x))
    torch.testing.assert_close(torch.autograd.grad(plain.sum(), x)[0], torch.autograd.grad(F.mish(x).sum(), x)[0])


def _constructed_batch(sizes):
    """Crystals with the given numbers of sites, each site one key per site of its own crystal."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rows = []
    for c, n in enumerate(sizes):
        rows += [list(range(offsets[c], offsets[c] + n))] * n
    width = max(sizes)
    key_index = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    key_mask = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows])
    site_crystal = torch.tensor(np.repeat(np.arange(len(sizes)), sizes))
    return key_index, key_mask, site_crystal, torch.tensor(offsets)


@pytest.mark.parametrize("sizes", [[1, 3, 2, 5], [4, 4], [7, 1], [2, 9, 3, 3, 1, 6, 2]])
def test_negatives_are_other_crystals_sites(sizes):
    key_index, key_mask, site_crystal, offsets = _constructed_batch(sizes)
    partner = partner_sites(site_crystal, offsets)
    assert (site_crystal[partner] != site_crystal).all()
    # every crystal's partner is one crystal, and each of its sites is used
    for c in range(len(sizes)):
        own = site_crystal == c
        partner_crystals = site_crystal[partner[own]].unique()
        assert partner_crystals.numel() == 1
    # the fake environments built from the partner rows hold only the other crystal's sites
    cyclic = cyclic_key_index(key_index, key_mask)
    fake_keys = cyclic[partner]
    assert (site_crystal[fake_keys] == site_crystal[partner].unsqueeze(1)).all()
    assert (site_crystal[fake_keys] != site_crystal.unsqueeze(1)).all()


def test_cyclic_key_index_repeats_real_keys_into_padding():
    key_index, key_mask, _, _ = _constructed_batch([3, 5])
    cyclic = cyclic_key_index(key_index, key_mask)
    assert torch.equal(cyclic[key_mask], key_index[key_mask])
    assert cyclic[0].tolist() == [0, 1, 2, 0, 1]


def test_every_loss_term_is_finite_and_positive(model, point_sets):
    losses = model(collate_point_sets(point_sets), generator=torch.Generator().manual_seed(0))
    assert set(losses) >= {"loss", "local", "global", "local_dim", "global_dim", "local_kl", "global_kl"}
    for name, value in losses.items():
        assert torch.isfinite(value), name
        assert value >= 0, name
    torch.testing.assert_close(losses["loss"], losses["local"] + losses["global"])
    torch.testing.assert_close(losses["local"], losses["local_dim"] + 0.1 * losses["local_kl"])
    with torch.no_grad():
        without = DeepInfoMax(model.encoder, domain_negatives=False)(collate_point_sets(point_sets), sample=False)
    assert torch.isfinite(without["global"])


def test_local_and_global_objectives_train_separate_parts(model, point_sets):
    batch = collate_point_sets(point_sets)
    model(batch)["local"].backward()
    assert all(p.grad is None for p in model.global_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.local_parameters())
    model.zero_grad(set_to_none=True)
    model(batch)["global"].backward()
    assert all(p.grad is None for p in model.local_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.global_parameters())


def test_row_chunks_trim_padding_and_restore_the_order():
    counts = torch.tensor([40, 3, 41, 116, 2, 39, 40, 5, 4, 112] * 6)
    chunks = RowChunks(counts, overhead_pairs=0)
    assert 2 <= len(chunks.chunks) <= 3
    padded = sum(len(rows) * n_keys for rows, n_keys in chunks)
    assert padded < 0.7 * len(counts) * int(counts.max())  # one list of 116 keys no longer pads every row
    for rows, n_keys in chunks:
        assert (counts[rows] <= n_keys).all()
    assert torch.equal(chunks.gather([rows for rows, _ in chunks]), torch.arange(len(counts)))
    assert len(RowChunks(counts, overhead_pairs=10**9).chunks) == 1


@pytest.mark.parametrize("n_blocks", [1, 3])
def test_attention_does_not_depend_on_the_chunks(point_sets, n_blocks):
    torch.manual_seed(0)
    local = SiteNetEncoder(EncoderConfig(n_blocks=n_blocks)).local
    batch = collate_point_sets(point_sets)
    query, key = local.project_sites(batch.site_features)
    distance = local.project_distances(batch.distance_values)
    args = (query, key, batch.key_index, distance, batch.distance_index, batch.key_mask)
    counts = batch.key_mask.sum(-1)
    many = local.attend(*args, RowChunks(counts, overhead_pairs=0))
    one = local.attend(*args, RowChunks(counts, overhead_pairs=10**9))
    for a, b in zip(many, one):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_further_block_sees_the_environments_of_the_keys(point_sets):
    """Moving one site's keys further away changes the vectors of the sites that have it as a key only with
    two blocks: one block sees its keys' species and distances, not the keys' own neighbours."""
    batch = collate_point_sets(point_sets[:1])
    moved = batch.distance_index.clone()
    moved[0] = batch.distance_index[0].flip(0) * batch.key_mask[0]  # site 0's keys at other distances
    neighbours_of_0 = ((batch.key_index[1:] == 0) & batch.key_mask[1:]).any(-1)
    assert neighbours_of_0.any()
    changed = {}
    for n_blocks in (1, 2):
        torch.manual_seed(0)
        local = SiteNetEncoder(EncoderConfig(n_blocks=n_blocks)).local
        assert len(local.further_blocks) == n_blocks - 1
        with torch.no_grad():
            before, after = (
                local(batch.site_features, batch.key_index, batch.distance_values, index, batch.key_mask)[0]
                for index in (batch.distance_index, moved)
            )
        assert not torch.equal(before[0], after[0])
        changed[n_blocks] = (before[1:] - after[1:]).abs().amax(-1)[neighbours_of_0]
    assert (changed[1] == 0).all() and (changed[2] > 1e-4).all()


def test_each_further_block_adds_its_own_layers():
    one, three = (SiteNetEncoder(EncoderConfig(n_blocks=n)) for n in (1, 3))
    added = sum(p.numel() for p in three.parameters()) - sum(p.numel() for p in one.parameters())
    assert added == 2 * (7 * 64 * 64 + 10 * 64 + 1)
    assert set(one.state_dict()) < set(three.state_dict())  # a single-block file keeps its tensor names
    with pytest.raises(ValueError, match="n_blocks must be an integer from 1 to 8, got 0"):
        EncoderConfig(n_blocks=0)


def test_a_batch_embeds_each_distinct_distance_once(point_sets):
    batch = collate_point_sets(point_sets)
    values = batch.distance_values
    assert (values[1:] > values[:-1]).all()  # sorted, distinct
    assert torch.equal(values[batch.distance_index], batch.distances)
    assert len(values) < batch.key_mask.sum() / 3  # symmetry-equivalent pairs share a distance


def test_a_single_crystal_batch_is_refused(model, point_sets):
    with pytest.raises(ValueError, match="at least two crystals"):
        model(collate_point_sets(point_sets[:1]))
