"""Deep InfoMax objective for the Site-Net encoder (docs/method.md, section 3).

Estimator: the Jensen-Shannon (binary cross-entropy) form, for critic score T,
``E_pos[softplus(-T)] + E_neg[softplus(T)]``. Critics are separable: each side is
projected by a small MLP (hidden ``critic_width``, mish) into a ``critic_dim``
space and T is the dot product.

Local objective (trains the local encoder and its critic): the sampled site
vector z_i is scored against each key's raw site features and distance, every
pair weighted by ``(d_ij + 1) ** -2`` normalised over the keys of i. Negatives
are three fake environments taken from another crystal of the batch: all fake
(its neighbours and distances), fake distances (true neighbours on its
distances) and fake composition (its neighbours on the true distances).

Global objective (trains the global encoder and its critic, on detached local
vectors): the sampled crystal vector is scored against its own sites' local
vectors (positive), against another crystal's sites (negative) and, with
``domain_negatives``, against three fake local environments encoded by the
current local encoder under no-grad: composition swapped (another crystal's
site features on the true geometry), structure swapped (true site features on
another crystal's distances and mask) and scrambled (keys randomly permuted,
so species no longer match distances). Each fake is applied to every site of
the batch at once, so an encoder with several attention blocks encodes a site
among neighbours that are fakes too.

Per-site loss = positive + mean of the negatives; mean per crystal, then over
the batch. "Another crystal" is the crystal half a batch away, site at the same
position modulo its size: always a different crystal for batches of two or more,
unlike a roll of the concatenated site axis, which needs every crystal to hold
less than half the batch.

A critic that cannot tell positives from negatives scores T = 0 everywhere and
each term equals ``CHANCE = 2 ln 2``. The global term's floor is lower but not
zero when some domain-aware negatives are (nearly) the true environment: a
scrambled single-element crystal is its own scramble. ``forward`` also returns
the positive and negative parts of both terms, and each kind of global negative
separately, so a run shows which discrimination is learnt.

Regularisation: mu and log-variance heads; training samples
``mu + eps * exp(logvar / 2)`` and adds ``kl_weight`` times the textbook Gaussian
KL to N(0, I), ``0.5 * (mu^2 + exp(logvar) - logvar - 1)``, averaged over
dimensions, sites (or crystals) and the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from .._utils import Rule, boolean, check_fields, real
from .activations import Mish, mish, mish_plain
from .compiled import PairBlock
from .encoder import DistanceExpansion, LocalEncoder, Pair, RowChunks, SiteNetEncoder, gather_rows, segment_mean
from .local_terms import local_terms

if TYPE_CHECKING:
    from ..pointsets.batching import PointSetBatch

__all__ = [
    "CHANCE",
    "DeepInfoMax",
    "ObjectiveSettings",
    "cyclic_key_index",
    "fake_environments",
    "gaussian_kl",
    "partner_sites",
]


CHANCE = 2 * math.log(2)
"""Value of a DIM term (positive + mean negative) for a critic that scores every pair 0."""


def partner_sites(site_crystal: torch.Tensor, crystal_offsets: torch.Tensor) -> torch.Tensor:
    """For each site, a site of the crystal half a batch away (same position modulo its size)."""
    n_crystals = crystal_offsets.shape[0] - 1
    counts = crystal_offsets[1:] - crystal_offsets[:-1]
    partner_crystal = (site_crystal + max(1, n_crystals // 2)) % n_crystals
    position = torch.arange(site_crystal.shape[0], device=site_crystal.device) - crystal_offsets[site_crystal]
    return crystal_offsets[partner_crystal] + position % counts[partner_crystal]


def cyclic_key_index(key_index: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """``key_index`` with each row's padding filled by repeating its real keys cyclically."""
    n_keys = key_mask.sum(-1, keepdim=True)
    columns = torch.arange(key_index.shape[1], device=key_index.device).unsqueeze(0) % n_keys
    return key_index.gather(1, columns)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-row mean over dimensions of KL(N(mu, exp(logvar)) || N(0, 1))."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1).mean(-1)


def _sample(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + noise * (0.5 * logvar).exp()


def _projection(n_in: int, width: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, width), Mish(), nn.Linear(width, n_out))


def _environment_scores(activation, fused):
    def environment_scores(neighbours, distances, folded):
        hidden = activation(neighbours + distances)
        if fused:  # a compiler fuses the sum, mish, product and reduction: no (rows, keys, width) tensor
            return (hidden * folded.unsqueeze(1)).sum(-1)
        return torch.einsum("rw,rkw->rk", folded, hidden)

    return environment_scores


ENVIRONMENT_SCORES = PairBlock(
    _environment_scores(mish, fused=False),
    _environment_scores(mish_plain, fused=True),
    dynamic_dims=((0, 1), (0, 1), (0,)),
)
"""``<folded_r, mish(neighbours_rk + distances_rk)>`` for every (row, key): the pair-level part of
``EnvironmentCritic.score``."""


@dataclass(frozen=True)
class ObjectiveSettings:
    """Settings of the Deep InfoMax objective that a saved encoder records (see ``DeepInfoMax``)."""

    kl_weight: float = 0.1
    domain_negatives: bool = True
    local_scrambled: bool = True
    batch_negatives: bool = True

    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        "kl_weight": real(0),
        "domain_negatives": boolean,
        "local_scrambled": boolean,
        "batch_negatives": boolean,
    }
    """What each field must be; the featurizer and saved encoders' settings are checked by the same rules."""

    def __post_init__(self) -> None:
        check_fields(self, **self.FIELD_RULES)


class EnvironmentCritic(nn.Module):
    """Scores a site vector against each of its keys' (raw site features, distance)."""

    def __init__(
        self,
        local_dim: int,
        n_site_features: int,
        width: int = 64,
        dim: int = 128,
        expand_distances: DistanceExpansion | None = None,
    ):
        super().__init__()
        self.site = _projection(local_dim, width, dim)
        self.neighbour_species = nn.Linear(n_site_features, width)
        self.expand_distances = expand_distances or DistanceExpansion()
        self.neighbour_distance = nn.Linear(self.expand_distances.n_rbf or 1, width, bias=False)
        self.neighbour_out = nn.Linear(width, dim)
        self.compiled_pairs = False  # see dim_sklearn.nn.compiled.set_compiled

    def embed_distances(self, distance_values: torch.Tensor) -> torch.Tensor:
        """Distance part of the neighbour embedding, per distinct distance: (n_distances, width)."""
        return self.neighbour_distance(self.expand_distances(distance_values))

    def score(self, query: torch.Tensor, neighbours: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """Scores (rows, max_keys) of projected site vectors ``query = site(local)`` against their environments.

        ``neighbours`` is ``neighbour_species(site_features)`` gathered onto the
        keys, ``distances`` is ``embed_distances`` of the distinct distances
        gathered onto the pairs (both (rows, max_keys, width)): gathered once,
        each serves every environment that pairs it with the other.
        """
        # <query, W h + b> computed as <W^T query, h> + <query, b>: no (R, K, dim) tensor.
        folded = query @ self.neighbour_out.weight  # (R, width)
        scores = ENVIRONMENT_SCORES(neighbours, distances, folded, compiled=self.compiled_pairs)
        return scores + (query @ self.neighbour_out.bias).unsqueeze(-1)

    def forward(
        self,
        local: torch.Tensor,
        site_features: torch.Tensor,
        key_index: torch.Tensor,
        distance_values: torch.Tensor,
        distance_index: torch.Tensor,
    ) -> torch.Tensor:
        """Scores (rows, max_keys) of site vectors ``local`` (rows, local_dim) against their keys.

        ``key_index`` points into ``site_features`` and ``distance_index`` into ``distance_values``.
        """
        neighbours = gather_rows(self.neighbour_species(site_features), key_index)
        distances = gather_rows(self.embed_distances(distance_values), distance_index)
        return self.score(self.site(local), neighbours, distances)


def _pair_weights(distances: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """``(d + 1)^-2`` over the real keys, normalised per row."""
    weights = (distances + 1).pow(-2) * key_mask
    return weights / weights.sum(-1, keepdim=True)


def _partner_then_own(
    pair: tuple[torch.Tensor, torch.Tensor], partner: torch.Tensor, copies: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both parts of per-site projections: the partner's rows, then ``copies`` times the own rows."""
    first, second = (torch.cat([part[partner], *[part] * copies]) for part in pair)
    return first, second


def fake_environments(
    local: LocalEncoder,
    query: Pair,
    key: Pair,
    distance: list[Pair],
    batch: PointSetBatch,
    partner: torch.Tensor,
    cyclic: torch.Tensor,
    scrambled: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Local vectors (means) of every site in the global objective's three fake environments.

    Composition swapped: the partner's site features on the true geometry;
    structure swapped: the true keys (``cyclic``) on the partner's distances and
    key mask; scrambled: the true keys in ``scrambled`` order. Each is a whole
    fake batch, its keys being its own rows, so further attention blocks see
    fake neighbours too. The three are encoded in one pass over 3 x n_sites rows,
    from ``query``, ``key`` and ``distance``, the true batch's projections
    (``LocalEncoder.project_sites`` and ``project_distances``).
    """
    n_sites = len(partner)
    mask, distance_index = batch.key_mask, batch.distance_index
    key_counts = mask.sum(-1)
    return local.attend(
        _partner_then_own(query, partner, 2),
        _partner_then_own(key, partner, 2),  # key table [partner's; own; own]: each third indexes its own rows
        torch.cat([batch.key_index, cyclic + n_sites, scrambled + 2 * n_sites]),
        distance,
        torch.cat([distance_index, distance_index[partner], distance_index]),
        torch.cat([mask, mask[partner], mask]),
        RowChunks(torch.cat([key_counts, key_counts[partner], key_counts])),
    )[0].split(n_sites)


class DeepInfoMax(nn.Module):
    """A Site-Net encoder with its Deep InfoMax critics and losses.

    Pair-level work is shared wherever two terms need the same thing: each
    distinct distance of a batch is embedded once for the encoder and once for
    the critic, the critic's site and distance projections serve every
    environment, and the global objective's fake environments reuse the local
    encoder's projections. Rows are processed in chunks of similar key counts
    (``dim_sklearn.nn.encoder.RowChunks``).

    Parameters
    ----------
    encoder : SiteNetEncoder
    critic_width : int, default=64
        Hidden width of the separable critics' projections.
    critic_dim : int, default=128
        Size of the space the critics project both sides into; the score is
        their dot product.
    kl_weight : float, default=0.1
    domain_negatives : bool, default=True
        Add the composition-swapped, structure-swapped and scrambled negatives
        to the global objective.
    local_scrambled : bool, default=True
        Add a fourth local negative, the site's own environment with its keys
        shuffled (species no longer match distances), so the local vectors learn
        which species sits at which distance, the difference the global
        objective's scrambled negative asks about (not in the paper).
    batch_negatives : bool, default=True
        Score every site against every other crystal of the batch (the mean of
        those terms replaces the single crystal half a batch away): many
        negatives per step, as in Hjelm et al.'s global DIM (not in the paper).
    """

    def __init__(
        self,
        encoder: SiteNetEncoder,
        critic_width: int = 64,
        critic_dim: int = 128,
        kl_weight: float = ObjectiveSettings.kl_weight,
        domain_negatives: bool = ObjectiveSettings.domain_negatives,
        local_scrambled: bool = ObjectiveSettings.local_scrambled,
        batch_negatives: bool = ObjectiveSettings.batch_negatives,
    ):
        super().__init__()
        config = encoder.config
        self.encoder = encoder
        self.local_critic = EnvironmentCritic(
            config.local_dim,
            config.n_site_features,
            critic_width,
            critic_dim,
            DistanceExpansion(config.n_rbf, config.rbf_cutoff),
        )
        self.global_critic_crystal = _projection(config.global_dim, critic_width, critic_dim)
        self.global_critic_site = _projection(config.local_dim, critic_width, critic_dim)
        self.kl_weight = kl_weight
        self.domain_negatives = domain_negatives
        self.local_scrambled = local_scrambled
        self.batch_negatives = batch_negatives

    def local_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by the local objective."""
        return [*self.encoder.local.parameters(), *self.local_critic.parameters()]

    def global_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by the global objective."""
        return [
            *self.encoder.global_.parameters(),
            *self.global_critic_crystal.parameters(),
            *self.global_critic_site.parameters(),
        ]

    def _local_terms(
        self, z: torch.Tensor, batch: PointSetBatch, cyclic, partner, scrambled, chunks: RowChunks
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive and mean negative local terms, per site."""
        critic = self.local_critic
        query = critic.site(z)
        species = critic.neighbour_species(batch.site_features)
        distance = critic.embed_distances(batch.distance_values)
        weights = _pair_weights(batch.distances, batch.key_mask)
        positives, negatives = [], []
        for rows, n in chunks:
            own, other = rows, partner[rows]
            own_keys, partner_keys = cyclic[own, :n], cyclic[other, :n]
            own_distances, other_distances = batch.distance_index[own, :n], batch.distance_index[other, :n]
            own_weights, other_weights = weights[own, :n], weights[other, :n]
            rows_query = query[rows]
            if critic.compiled_pairs:  # every term in one compiled pass, forward and backward
                positive, negative = local_terms(
                    species,
                    distance,
                    rows_query @ critic.neighbour_out.weight,
                    rows_query @ critic.neighbour_out.bias,
                    (own_keys, partner_keys, None if scrambled is None else scrambled[own, :n]),
                    (own_distances, other_distances),
                    (own_weights, other_weights),
                )
                positives.append(positive)
                negatives.append(negative)
                continue
            neighbours = {
                name: gather_rows(species, keys) for name, keys in (("own", own_keys), ("partner", partner_keys))
            }
            distances = {
                name: gather_rows(distance, index)
                for name, index in (("own", own_distances), ("other", other_distances))
            }

            def term(neighbours, distances, weights: torch.Tensor, sign: float, rows_query=rows_query):
                scores = critic.score(rows_query, neighbours, distances)
                return (weights * F.softplus(sign * scores)).sum(-1)

            positives.append(term(neighbours["own"], distances["own"], own_weights, -1.0))
            fakes = [
                term(neighbours["partner"], distances["other"], other_weights, 1.0),  # all fake
                term(neighbours["own"], distances["other"], other_weights, 1.0),  # fake distances
                term(neighbours["partner"], distances["own"], own_weights, 1.0),  # fake composition
            ]
            if scrambled is not None:  # own neighbours on own distances, shuffled: species no longer match distances
                fakes.append(term(gather_rows(species, scrambled[own, :n]), distances["own"], own_weights, 1.0))
            negatives.append(torch.stack(fakes).mean(0))
        return chunks.gather(positives), chunks.gather(negatives)

    def forward(
        self, batch: PointSetBatch, sample: bool = True, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """All loss terms of one batch; ``loss`` is the sum to minimise.

        Parameters
        ----------
        batch : PointSetBatch
            At least two crystals.
        sample : bool, default=True
            Sample the representations (training); False uses the means.
        generator : torch.Generator, optional
            Source of the sampling noise and the scrambling permutation.
        """
        if batch.n_crystals < 2:
            raise ValueError("Deep InfoMax needs at least two crystals per batch for its negatives")
        keys, mask, distance_index = batch.key_index, batch.key_mask, batch.distance_index
        crystal, n_crystals = batch.site_crystal, batch.n_crystals
        partner = partner_sites(crystal, batch.crystal_offsets)
        cyclic = cyclic_key_index(keys, mask)
        key_counts = mask.sum(-1)
        chunks = RowChunks(torch.maximum(key_counts, key_counts[partner]))  # negatives borrow the partner's keys

        def per_crystal(per_site: torch.Tensor) -> torch.Tensor:
            return segment_mean(per_site, crystal, n_crystals).mean()

        def scramble() -> torch.Tensor:
            order = torch.rand(keys.shape, generator=generator, device=keys.device).masked_fill(~mask, 2.0)
            return keys.gather(1, order.argsort(-1))

        scrambled = scramble() if self.local_scrambled else None

        # ---- local objective
        local_encoder = self.encoder.local
        query, key = local_encoder.project_sites(batch.site_features)
        distance = local_encoder.project_distances(batch.distance_values)
        mu, logvar = local_encoder.attend(query, key, keys, distance, distance_index, mask, chunks)
        z = _sample(mu, logvar, generator) if sample else mu
        local_positive, local_negative = self._local_terms(z, batch, cyclic, partner, scrambled, chunks)
        local_kl = per_crystal(gaussian_kl(mu, logvar))
        local_dim = per_crystal(local_positive + local_negative)

        # ---- global objective, on detached local vectors
        local_vectors = mu.detach()
        g_mu, g_logvar = self.encoder.global_(local_vectors, crystal, n_crystals)
        g = _sample(g_mu, g_logvar, generator) if sample else g_mu
        crystal_side = self.global_critic_crystal(g)  # (B, dim)
        own = F.embedding(crystal, crystal_side)

        def score(site_vectors: torch.Tensor, crystal_vectors: torch.Tensor = own) -> torch.Tensor:
            return (self.global_critic_site(site_vectors) * crystal_vectors).sum(-1)

        global_positive = F.softplus(-score(local_vectors))
        if self.batch_negatives:
            # every site against every other crystal of the batch: (S, B) scores, own crystal masked out
            others = F.softplus(self.global_critic_site(local_vectors) @ crystal_side.T)
            others = others.masked_fill(F.one_hot(crystal, n_crystals).bool(), 0.0)
            negatives = {"partner": others.sum(-1) / (n_crystals - 1)}
        else:
            negatives = {"partner": F.softplus(score(local_vectors, F.embedding(crystal[partner], crystal_side)))}
        if self.domain_negatives:
            with torch.no_grad():
                if scrambled is None:
                    scrambled = scramble()
                fakes = fake_environments(local_encoder, query, key, distance, batch, partner, cyclic, scrambled)
            negatives.update(
                {kind: F.softplus(score(fake)) for kind, fake in zip(("composition", "structure", "scrambled"), fakes)}
            )
        global_negative = torch.stack(list(negatives.values())).mean(0)
        global_kl = gaussian_kl(g_mu, g_logvar).mean()
        global_dim = per_crystal(global_positive + global_negative)

        local_total = local_dim + self.kl_weight * local_kl
        global_total = global_dim + self.kl_weight * global_kl
        return {
            "loss": local_total + global_total,
            "local": local_total,
            "global": global_total,
            "local_dim": local_dim,
            "global_dim": global_dim,
            "local_kl": local_kl,
            "global_kl": global_kl,
            "local_positive": per_crystal(local_positive).detach(),
            "local_negative": per_crystal(local_negative).detach(),
            "global_positive": per_crystal(global_positive).detach(),
            **{f"global_negative_{kind}": per_crystal(value).detach() for kind, value in negatives.items()},
        }
