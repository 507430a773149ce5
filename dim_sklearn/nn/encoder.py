"""The compact Site-Net encoder used with Deep InfoMax (METHOD.md, section 3).

Every hidden layer is Linear -> mish -> LayerNorm; no dropout, no residuals.

Local encoder (one attention block, one head): the site features (8 or 9) and
each query-key distance are embedded to ``width``; every (query i, key j) pair
``[x_i, x_j, e_ij]`` feeds an attention-logit MLP (3 width -> width -> 1, softmax
over the keys) and a value MLP (3 width -> width -> width); the attention-weighted
sum of values goes through a plain Linear to the ``local_dim`` site vector mu_i.

Global encoder: per site local_dim -> width -> global_width, mean over the
crystal's unique sites, global_width -> width, then a plain Linear to the
``global_dim`` crystal vector mu_g, the feature vector handed downstream.

Distances enter either as the raw scalar (``n_rbf=0``, the paper's encoder) or
expanded on ``n_rbf`` Gaussian radial basis functions with centres evenly spaced
on [0, ``rbf_cutoff``] Angstrom (the expansion METHOD.md names as a fair
improvement; SchNet's form ``exp(-(d - c_k)^2 / spacing^2)``).

Both heads also output a log-variance (used by Deep InfoMax's sampling and
KL term). The first layer of each pair MLP is computed as the sum of a query,
a key and a distance projection: the same function as a Linear on the
concatenated pair, without materialising the (pairs, 3 width) tensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from .._utils import check_fields, integer, is_int, real
from .activations import Mish, mish

if TYPE_CHECKING:
    from ..batching import PointSetBatch

__all__ = [
    "DistanceExpansion",
    "EncoderConfig",
    "GlobalEncoder",
    "LocalEncoder",
    "RowChunks",
    "SiteNetEncoder",
    "gather_keys",
    "segment_mean",
    "take_rows",
]


@dataclass(frozen=True)
class EncoderConfig:
    """Widths of the compact Site-Net encoder (the DIM paper's, about 63k parameters) and its distance input.

    ``n_rbf=0`` feeds the raw distance, as the paper; the default expands it on
    16 Gaussians, which let Deep InfoMax learn geometry (docs/deep-infomax.md).
    """

    n_site_features: int = 8
    width: int = 64
    local_dim: int = 32
    global_width: int = 128
    global_dim: int = 64
    n_rbf: int = 16
    rbf_cutoff: float = 8.0

    def __post_init__(self) -> None:
        check_fields(
            self,
            **dict.fromkeys(("n_site_features", "width", "local_dim", "global_width", "global_dim"), integer(1)),
            n_rbf=("0 (raw distances) or an integer >= 2", lambda v: is_int(v) and (v == 0 or v >= 2)),
            rbf_cutoff=real(0, low_open=True),
        )

    @property
    def n_distance_features(self) -> int:
        """Width of a distance as the networks see it: 1 (raw) or ``n_rbf``."""
        return self.n_rbf or 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DistanceExpansion(nn.Module):
    """A distance (any shape) -> its Gaussian radial-basis expansion (shape + (n_rbf,)), or itself as (..., 1).

    Parameters
    ----------
    n_rbf : int
        Number of Gaussians; 0 keeps the raw distance as a single feature.
    cutoff : float
        Centre of the last Gaussian (Angstrom); the first is at 0.
    """

    def __init__(self, n_rbf: int = 0, cutoff: float = 8.0):
        super().__init__()
        self.n_rbf = n_rbf
        self.centres: torch.Tensor
        self.register_buffer(
            "centres", torch.linspace(0.0, cutoff, n_rbf) if n_rbf else torch.zeros(0), persistent=False
        )
        self.gamma = (n_rbf - 1) ** 2 / cutoff**2 if n_rbf else 0.0

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        d = distances.unsqueeze(-1)
        if not self.n_rbf:
            return d
        return torch.exp(-self.gamma * (d - self.centres.to(d.dtype)).square())


def hidden_layer(n_in: int, n_out: int) -> nn.Sequential:
    """Linear -> mish -> LayerNorm."""
    return nn.Sequential(nn.Linear(n_in, n_out), Mish(), nn.LayerNorm(n_out))


def segment_mean(values: torch.Tensor, segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Mean of the rows of ``values`` sharing a segment id; shape (n_segments, ...)."""
    sums = values.new_zeros((n_segments, *values.shape[1:])).index_add_(0, segments, values)
    counts = torch.bincount(segments, minlength=n_segments).clamp_min(1).to(values.dtype)
    return sums / counts.view(-1, *([1] * (values.dim() - 1)))


Pair = tuple[torch.Tensor, torch.Tensor]
"""The attention-branch and value-branch parts of a first pair layer."""


def gather_keys(key: Pair, key_index: torch.Tensor) -> Pair:
    """Per-site key projections gathered onto the pairs: (n_sites, max_keys, width) each."""
    return F.embedding(key_index, key[0]), F.embedding(key_index, key[1])


class RowChunks:
    """Query rows grouped by key count, ``chunk_rows`` at a time.

    Keys are padded at the end of each row, so ``[rows, :n_keys]`` holds every
    real key of ``rows`` when ``n_keys`` is their largest count. Rows are taken in
    order of their key count (the most any of ``key_masks`` gives them), so each
    chunk pads only to keys its own rows have: rows are independent, and
    :meth:`gather` puts per-row results back in the original order.
    """

    def __init__(self, chunk_rows: int, *key_masks: torch.Tensor):
        counts = torch.stack([mask.sum(-1) for mask in key_masks]).amax(0)
        sorted_tensor, self.order = torch.sort(counts, stable=True)
        sorted_counts: list[int] = sorted_tensor.tolist()
        n_rows = len(sorted_counts)
        self.chunks: list[tuple[torch.Tensor, int]] = [
            (self.order[start : start + chunk_rows], sorted_counts[min(start + chunk_rows, n_rows) - 1])
            for start in range(0, n_rows, chunk_rows)
        ]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        """(row indices, key count to keep) per chunk."""
        return iter(self.chunks)

    def gather(self, per_chunk: list[torch.Tensor]) -> torch.Tensor:
        """Per-chunk row results (in chunk order) back in the original row order."""
        stacked = torch.cat(per_chunk)
        return stacked.new_empty(stacked.shape).index_copy_(0, self.order, stacked)


def take_rows(pair: Pair, rows: torch.Tensor) -> Pair:
    """The given rows (first axis) of both parts."""
    return pair[0].index_select(0, rows), pair[1].index_select(0, rows)


class LocalEncoder(nn.Module):
    """Attention over supercell sites -> one vector per unique site."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        w = config.width
        self.site_embedding = hidden_layer(config.n_site_features, w)
        self.expand_distances = DistanceExpansion(config.n_rbf, config.rbf_cutoff)
        self.distance_embedding = hidden_layer(config.n_distance_features, w)
        # First layers of the attention and value MLPs on the pair [x_i, x_j, e_ij],
        # each as its query, key and distance parts.
        self.query_attention = nn.Linear(w, w)
        self.query_value = nn.Linear(w, w)
        self.key_attention = nn.Linear(w, w, bias=False)
        self.key_value = nn.Linear(w, w, bias=False)
        self.distance_attention = nn.Linear(w, w, bias=False)
        self.distance_value = nn.Linear(w, w, bias=False)
        self.attention_norm = nn.LayerNorm(w)
        self.attention_logit = nn.Linear(w, 1)
        self.value_norm = nn.LayerNorm(w)
        self.value_out = hidden_layer(w, w)
        self.mu = nn.Linear(w, config.local_dim)
        self.logvar = nn.Linear(w, config.local_dim)

    def forward(
        self,
        site_features: torch.Tensor,
        key_index: torch.Tensor,
        distances: torch.Tensor,
        key_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Local vectors of every query site.

        Parameters
        ----------
        site_features : (n_sites, n_features)
        key_index : (n_sites, max_keys) rows of ``site_features`` the keys are images of
        distances : (n_sites, max_keys)
        key_mask : (n_sites, max_keys) bool, False at padding

        Returns
        -------
        mu, logvar : (n_sites, local_dim) each
        """
        query, key = self.project_sites(site_features)
        return self.attend(query, key, key_index, distances, key_mask)

    def project_sites(self, site_features: torch.Tensor) -> tuple[Pair, Pair]:
        """Query and key parts of the first pair layers, per site: (n_sites, width) each."""
        x = self.site_embedding(site_features)
        return (self.query_attention(x), self.query_value(x)), (self.key_attention(x), self.key_value(x))

    def project_distances(self, distances: torch.Tensor) -> Pair:
        """Distance parts of the first pair layers: (n_sites, max_keys, width) each."""
        e = self.distance_embedding(self.expand_distances(distances))
        return self.distance_attention(e), self.distance_value(e)

    def attend(
        self,
        query: Pair,
        key: Pair,
        key_index: torch.Tensor,
        distances: torch.Tensor,
        key_mask: torch.Tensor,
        distance_parts: Pair | None = None,
        chunk_rows: int = 256,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention of every query row over its keys.

        Parameters
        ----------
        query, key : per-site projections from :meth:`project_sites`
        key_index, distances, key_mask : (n_sites, max_keys)
        distance_parts : optional precomputed :meth:`project_distances` of ``distances``
        chunk_rows : int
            Rows are independent and processed this many at a time, grouped by
            key count and trimmed to their longest key list (see :class:`RowChunks`),
            so the pair-sized temporaries stay small; the result does not depend on it.
        """
        chunks = RowChunks(chunk_rows, key_mask)
        out = []
        for rows, n_keys in chunks:
            args = (query[0][rows], query[1][rows], key, key_index[rows, :n_keys], key_mask[rows, :n_keys])
            if distance_parts is not None:
                parts = (distance_parts[0][rows, :n_keys], distance_parts[1][rows, :n_keys])
                out.append(self._attend(*args, parts=parts))
            else:
                out.append(self._attend(*args, distances[rows, :n_keys]))
        return chunks.gather([mu for mu, _ in out]), chunks.gather([logvar for _, logvar in out])

    def _attend(self, query_attention, query_value, key, key_index, key_mask, distances=None, parts=None):
        keys = gather_keys(key, key_index)
        if parts is None:
            parts = self.project_distances(distances)
        attention_hidden = mish(query_attention.unsqueeze(1) + keys[0] + parts[0])
        value_hidden = mish(query_value.unsqueeze(1) + keys[1] + parts[1])
        logits = self.attention_logit(self.attention_norm(attention_hidden)).squeeze(-1)
        weights = torch.softmax(logits.masked_fill(~key_mask, float("-inf")), dim=-1)
        values = self.value_out(self.value_norm(value_hidden))
        pooled = torch.einsum("sk,skw->sw", weights, values)
        return self.mu(pooled), self.logvar(pooled)


class GlobalEncoder(nn.Module):
    """Site vectors -> one vector per crystal (mean pooling)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.site_layers = nn.Sequential(
            hidden_layer(config.local_dim, config.width), hidden_layer(config.width, config.global_width)
        )
        self.crystal_layer = hidden_layer(config.global_width, config.width)
        self.mu = nn.Linear(config.width, config.global_dim)
        self.logvar = nn.Linear(config.width, config.global_dim)

    def forward(
        self, local: torch.Tensor, site_crystal: torch.Tensor, n_crystals: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Crystal vectors from site vectors; ``site_crystal`` gives each site's crystal."""
        pooled = segment_mean(self.site_layers(local), site_crystal, n_crystals)
        hidden = self.crystal_layer(pooled)
        return self.mu(hidden), self.logvar(hidden)


class SiteNetEncoder(nn.Module):
    """Local + global encoder; ``forward(batch)`` gives the crystal vectors (means)."""

    def __init__(self, config: EncoderConfig | None = None):
        super().__init__()
        self.config = config or EncoderConfig()
        self.local = LocalEncoder(self.config)
        self.global_ = GlobalEncoder(self.config)

    def forward(self, batch: PointSetBatch) -> torch.Tensor:
        """Crystal vectors mu_g of a :class:`~dim_sklearn.batching.PointSetBatch`, shape (n_crystals, global_dim)."""
        local, _ = self.local(batch.site_features, batch.key_index, batch.distances, batch.key_mask)
        crystal, _ = self.global_(local, batch.site_crystal, batch.n_crystals)
        return crystal
