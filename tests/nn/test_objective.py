"""The DIM objective's options and diagnostics, on small hand-built crystals (no data folder needed)."""

import numpy as np
import pytest
import torch
from crystals import six_crystals
from pymatgen.core import Lattice, Structure

from dim_sklearn import DeepInfoMaxFeaturizer, build_point_sets
from dim_sklearn.nn import (
    CHANCE,
    DeepInfoMax,
    DistanceExpansion,
    EncoderConfig,
    SiteNetEncoder,
    cyclic_key_index,
    partner_sites,
)
from dim_sklearn.nn.infomax import fake_environments
from dim_sklearn.pointsets import collate_point_sets
from dim_sklearn.pretrain import PretrainSettings, pretrain


def _crystals() -> list[Structure]:
    return [
        *six_crystals(),
        Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(
            Lattice.tetragonal(4.6, 2.96),
            ["Ti", "Ti", "O", "O", "O", "O"],
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0.3, 0], [0.7, 0.7, 0], [0.8, 0.2, 0.5], [0.2, 0.8, 0.5]],
        ),
    ]


@pytest.fixture(scope="module")
def point_sets():
    return build_point_sets(_crystals())


def test_radial_basis_peaks_at_its_centres_and_raw_distance_passes_through():
    expand = DistanceExpansion(n_rbf=9, cutoff=8.0)
    d = torch.tensor([[0.0, 1.0], [4.0, 8.0]])
    out = expand(d)
    assert out.shape == (2, 2, 9)
    assert torch.equal(out.argmax(-1), torch.tensor([[0, 1], [4, 8]]))
    torch.testing.assert_close(out.amax(-1), torch.ones(2, 2))
    assert torch.equal(DistanceExpansion(0)(d), d.unsqueeze(-1))
    with pytest.raises(ValueError, match="n_rbf"):
        EncoderConfig(n_rbf=1)


def test_encoder_with_radial_basis_gives_finite_vectors(point_sets):
    torch.manual_seed(0)
    encoder = SiteNetEncoder(EncoderConfig(n_rbf=16))
    assert (
        sum(p.numel() for p in encoder.parameters())
        - sum(p.numel() for p in SiteNetEncoder(EncoderConfig(n_rbf=0)).parameters())
        == 15 * 64
    )
    out = encoder(collate_point_sets(point_sets))
    assert out.shape == (len(point_sets), 64) and torch.isfinite(out).all()


def test_critics_that_score_zero_give_exactly_the_chance_value(point_sets):
    """The reference point of every reported DIM term: scores of 0 everywhere give 2 ln 2 for each term."""
    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder(EncoderConfig(n_rbf=8)), local_scrambled=True, batch_negatives=True)
    with torch.no_grad():
        for layer in (model.local_critic.site[-1], model.global_critic_crystal[-1]):
            layer.weight.zero_()
            layer.bias.zero_()
    out = model(collate_point_sets(point_sets), sample=False)
    assert out["local_dim"].item() == pytest.approx(CHANCE, abs=1e-5)
    assert out["global_dim"].item() == pytest.approx(CHANCE, abs=1e-5)
    parts = [k for k in out if k.startswith("global_negative_")]
    assert sorted(parts) == [f"global_negative_{k}" for k in ("composition", "partner", "scrambled", "structure")]
    for name in ("local_positive", "local_negative", "global_positive", *parts):
        assert out[name].item() == pytest.approx(np.log(2), abs=1e-5), name


@pytest.mark.parametrize("n_blocks", [1, 2])
def test_fake_environments_are_whole_fake_batches(point_sets, n_blocks):
    """The global objective's three fakes, encoded in one pass, equal the encoder run on three fake batches."""
    torch.manual_seed(0)
    local = SiteNetEncoder(EncoderConfig(n_blocks=n_blocks)).local
    batch = collate_point_sets(point_sets)
    partner = partner_sites(batch.site_crystal, batch.crystal_offsets)
    cyclic = cyclic_key_index(batch.key_index, batch.key_mask)
    scrambled = batch.key_index.gather(1, torch.rand(batch.key_index.shape).masked_fill(~batch.key_mask, 2).argsort(-1))
    values, index, mask = batch.distance_values, batch.distance_index, batch.key_mask
    with torch.no_grad():
        query, key = local.project_sites(batch.site_features)
        fakes = fake_environments(local, query, key, local.project_distances(values), batch, partner, cyclic, scrambled)
        expected = [
            local(batch.site_features[partner], batch.key_index, values, index, mask)[0],
            local(batch.site_features, cyclic, values, index[partner], mask[partner])[0],
            local(batch.site_features, scrambled, values, index, mask)[0],
        ]
    for kind, fake, want in zip(("composition", "structure", "scrambled"), fakes, expected):
        torch.testing.assert_close(fake, want, rtol=1e-5, atol=1e-5, msg=kind)


def test_batch_negatives_with_two_crystals_equal_the_partner_negative(point_sets):
    """With two crystals the only other crystal is the partner: both forms give the same losses."""
    batch = collate_point_sets(point_sets[3:5])
    losses = []
    for batch_negatives in (False, True):
        torch.manual_seed(0)
        model = DeepInfoMax(SiteNetEncoder(), batch_negatives=batch_negatives)
        losses.append(model(batch, generator=torch.Generator().manual_seed(1)))
    for name in losses[0]:
        torch.testing.assert_close(losses[0][name], losses[1][name], msg=name)


@pytest.mark.parametrize("options", [dict(local_scrambled=True), dict(batch_negatives=True)])
def test_objective_options_train_both_encoders(point_sets, options):
    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder(EncoderConfig(n_rbf=8)), **options)
    out = model(collate_point_sets(point_sets), generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert all(torch.isfinite(v) for v in out.values())
    for part in (model.encoder.local, model.encoder.global_):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in part.parameters())


def test_history_reports_the_terms_their_parts_and_the_vector_spread(point_sets):
    torch.manual_seed(0)
    model = DeepInfoMax(SiteNetEncoder())
    history, _ = pretrain(
        model, point_sets * 3, PretrainSettings(max_epochs=2, batch_sites=40, validation_fraction=0.25), random_state=0
    )
    for row in history:
        for name in (
            "local_dim",
            "global_dim",
            "local_kl",
            "global_kl",
            "global_positive",
            "global_negative_scrambled",
            "local_negative",
        ):
            assert np.isfinite(row[name]) and np.isfinite(row[f"valid_{name}"]), name
        assert row["valid_vector_std"] > 0


def test_featurizer_objective_options_round_trip(tmp_path):
    structures = _crystals()
    feat = DeepInfoMaxFeaturizer(
        n_rbf=8, n_blocks=2, local_scrambled=True, batch_negatives=True, max_epochs=1, batch_sites=40, random_state=0
    ).fit(structures * 2)
    feat.save(tmp_path / "enc")
    loaded = DeepInfoMaxFeaturizer.load(tmp_path / "enc")
    assert loaded.get_params() == {**feat.get_params(), "encoder": tmp_path / "enc"}
    np.testing.assert_array_equal(loaded.transform(structures), feat.transform(structures))


def test_a_crystal_larger_than_half_the_budget_never_forms_a_batch_alone(point_sets):
    """Batches of one crystal have no negatives; the 6-site crystal with a 6-site budget joins a neighbour."""
    torch.manual_seed(0)
    history, _ = pretrain(
        DeepInfoMax(SiteNetEncoder()),
        point_sets * 2,
        PretrainSettings(max_epochs=2, batch_sites=6, validation_fraction=0.25),
        random_state=0,
    )
    assert len(history) == 2 and np.isfinite(history[-1]["valid_loss"])
