"""The compact Site-Net encoder used with Deep InfoMax (docs/method.md, section 2).

Every hidden layer is Linear -> mish -> LayerNorm; no dropout, no residuals.

Local encoder (``n_blocks`` attention blocks, one head each; one by default): the
site features (8 or 9) and each query-key distance are embedded to ``width``;
every (query i, key j) pair ``[x_i, x_j, e_ij]`` feeds an attention-logit MLP
(3 width -> width -> 1, softmax over the keys) and a value MLP (3 width -> width ->
width), and the attention-weighted sum of values is the site's new ``width``
vector. A further block does the same with each site's vector from the block
before as ``x`` (its own layers, the same distance embedding), so a site sees its
neighbours' environments too. The last block's sums go through a plain Linear
to the ``local_dim`` site vector mu_i.

Global encoder: per site local_dim -> width -> global_width, mean over the
crystal's unique sites, global_width -> width, then a plain Linear to the
``global_dim`` crystal vector mu_g, the feature vector handed downstream.

Distances enter either as the raw scalar (``n_rbf=0``, the paper's encoder) or
expanded on ``n_rbf`` Gaussian radial basis functions with centres evenly spaced
on [0, ``rbf_cutoff``] Angstrom (an expansion the DIM paper did not use,
measured in docs/deep-infomax.md; SchNet's form ``exp(-(d - c_k)^2 / spacing^2)``).

Both heads also output a log-variance (used by Deep InfoMax's sampling and
KL term). The first layer of each pair MLP is computed as the sum of a query,
a key and a distance projection: the same function as a Linear on the
concatenated pair, without materialising the (pairs, 3 width) tensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._utils import Rule, check_fields, either, integer, is_int, real
from .activations import Mish, mish, mish_plain
from .compiled import PairBlock

if TYPE_CHECKING:
    from ..pointsets.batching import PointSetBatch

__all__ = [
    "MAX_BLOCKS",
    "MAX_RBF",
    "MAX_WIDTH",
    "AttentionBlock",
    "DistanceExpansion",
    "EncoderConfig",
    "GlobalEncoder",
    "LocalEncoder",
    "RowChunks",
    "SiteNetEncoder",
    "gather_rows",
    "pair_input",
    "segment_mean",
]


MAX_WIDTH = 1024
"""Largest width of any layer of the networks (the compact encoder's largest is 128; the original Site-Net's 225):
memory and time grow with its square, so no setting or saved file may ask for more."""
MAX_RBF = 256
"""Largest number of radial basis functions a distance may be expanded on."""
MAX_BLOCKS = 8
"""Most attention blocks of the local encoder: time and memory grow with their number."""


@dataclass(frozen=True)
class EncoderConfig:
    """Widths of the compact Site-Net encoder (the DIM paper's; 62,913 parameters by default) and its distance input.

    ``n_rbf=0`` feeds the raw distance, as the paper; the default expands it on
    16 Gaussians, which let Deep InfoMax learn geometry (docs/deep-infomax.md).
    Every width (``n_site_features`` included) is an integer from 1 to
    ``MAX_WIDTH``; ``n_rbf`` is 0 or from 2 to ``MAX_RBF``; ``n_blocks`` (attention
    blocks of the local encoder) from 1 to ``MAX_BLOCKS``; a value outside raises
    a ``ValueError`` naming the field.
    """

    n_site_features: int = 8
    width: int = 64
    local_dim: int = 32
    global_width: int = 128
    global_dim: int = 64
    n_rbf: int = 16
    rbf_cutoff: float = 8.0
    n_blocks: int = 1

    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        **dict.fromkeys(("n_site_features", "width", "local_dim", "global_width", "global_dim"), integer(1, MAX_WIDTH)),
        "n_rbf": either(("0 (raw distances)", lambda v: is_int(v) and v == 0), integer(2, MAX_RBF)),
        "rbf_cutoff": real(0, low_open=True),
        "n_blocks": integer(1, MAX_BLOCKS),
    }
    """What each field must be; the estimators check their parameters of these names by the same rules."""

    def __post_init__(self) -> None:
        check_fields(self, **self.FIELD_RULES)

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


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a (n, width) table: shape ``index.shape + (width,)``.

    ``index_select`` on the flattened index; on the CPU it is several times faster
    than ``F.embedding`` or advanced indexing, forward and backward.
    """
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[-1])


def pair_input(
    query: torch.Tensor | None,
    key: torch.Tensor,
    distance: torch.Tensor,
    key_index: torch.Tensor,
    distance_index: torch.Tensor,
) -> torch.Tensor:
    """First pair layer ``query_i + key_j + distance_ij`` on every (query, key) pair: (n_sites, max_keys, width).

    ``query`` holds one row per query site (None: no query part), ``key`` one per
    site (gathered by ``key_index``) and ``distance`` one per distinct distance
    (gathered by ``distance_index``).
    """
    # in-place only on fresh tensors, never on views: autograd would copy them back in the backward pass
    summed = key.index_select(0, key_index.reshape(-1)).add_(distance.index_select(0, distance_index.reshape(-1)))
    pairs = summed.view(*key_index.shape, -1)
    return pairs if query is None else pairs + query.unsqueeze(1)


class RowChunks:
    """Query rows in up to three chunks of similar key counts, each trimmed to its own longest key list.

    Keys are padded at the end of each row to the batch's longest list, so one
    large supercell in a batch pads every row to its size (on the real data sets
    about 40% of the pair tensors are padding). Rows are independent: sorted by
    key count and cut where the padded size of the chunks is smallest, they are
    processed chunk by chunk with ``[rows, :n_keys]`` and put back in order by
    ``gather``. A chunk costs a fixed overhead too, counted as
    ``overhead_pairs`` pairs.

    Parameters
    ----------
    key_counts : (n_rows,) int tensor
        Keys each row needs (real keys; for negatives that borrow another row's
        keys, the larger of the two counts).
    """

    def __init__(self, key_counts: torch.Tensor, overhead_pairs: int = 2_000):
        sorted_counts, self.order = torch.sort(key_counts, stable=True)
        counts = sorted_counts.cpu().numpy().astype(np.int64)
        n = len(counts)
        # Cut only where the count changes: ends of runs of equal counts (and n, for fewer chunks).
        ends = np.append(np.flatnonzero(np.diff(counts)) + 1, n)
        # cost of chunks [0, i), [i, j), [j, n) for cut positions i <= j among the ends
        i, j = ends[:, None], ends[None, :]
        cost = i * counts[i - 1] + (j - i) * counts[j - 1] + (n - j) * counts[-1]
        cost = cost + overhead_pairs * ((j > i).astype(np.int64) + (j < n))
        cost = np.where(j >= i, cost, np.iinfo(np.int64).max)
        first, second = np.unravel_index(np.argmin(cost), cost.shape)
        bounds = sorted({0, int(ends[first]), int(ends[second]), n})
        self.inverse = torch.argsort(self.order)
        self.chunks = [(self.order[start:end], int(counts[end - 1])) for start, end in pairwise(bounds) if end > start]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        """(row indices, key count to keep) per chunk."""
        return iter(self.chunks)

    def gather(self, per_chunk: list[torch.Tensor]) -> torch.Tensor:
        """Per-chunk row results (in chunk order) back in the original row order."""
        stacked = per_chunk[0] if len(per_chunk) == 1 else torch.cat(per_chunk)
        return stacked.index_select(0, self.inverse)


def _attention_pool(activation):
    def attention_pool(pairs, key_mask, layers):
        attention_norm, logit_weight, logit_bias, value_norm, value_weight, value_bias, out_norm = layers
        attention_in, value_in = pairs.chunk(2, dim=-1)
        shape = attention_in.shape[-1:]
        hidden = F.layer_norm(activation(attention_in), shape, *attention_norm)
        logits = F.linear(hidden, logit_weight, logit_bias).squeeze(-1)
        weights = torch.softmax(logits.masked_fill(~key_mask, float("-inf")), dim=-1)
        values = F.linear(F.layer_norm(activation(value_in), shape, *value_norm), value_weight, value_bias)
        values = F.layer_norm(activation(values), shape, *out_norm)
        return torch.einsum("sk,skw->sw", weights, values)

    return attention_pool


ATTENTION_POOL = PairBlock(_attention_pool(mish), _attention_pool(mish_plain), dynamic_dims=((0, 1), (0, 1)))
"""The pair-level part of ``LocalEncoder.attend``: from the first pair layers (``pair_input``, the
attention and value parts side by side) to the
attention-weighted sum of values. The gathers stay outside it: their eager backward (``index_add_``) scales
over threads, where a compiled scatter's atomic additions do not."""


def _gathered_attention_pool(pool, gather):
    def gathered_attention_pool(query, key, key_index, distance, distance_index, key_mask, layers):
        return pool(gather(query, key, distance, key_index, distance_index), key_mask, layers)

    return gathered_attention_pool


def _pair_input_plain(query, key, distance, key_index, distance_index):
    return key[key_index] + distance[distance_index] + query.unsqueeze(1)


GATHERED_ATTENTION_POOL = PairBlock(
    _gathered_attention_pool(ATTENTION_POOL.eager, pair_input),
    _gathered_attention_pool(ATTENTION_POOL.compilable, _pair_input_plain),
    dynamic_dims=((0,), (0,), (0, 1), (0,), (0, 1), (0, 1)),
)
"""``ATTENTION_POOL`` of ``pair_input``, gathers included: used without gradients (no backward, no scatter),
where the compiled form never writes the pair tensors to memory (about 2.5 times faster than the gathers
outside on two CPU threads)."""


class _AttentionLayers(nn.Module):
    """The layers of one attention block, and what a block computes with them.

    The first layers of the attention and value MLPs on the pair ``[x_i, x_j, e_ij]``
    are held as their query, key and distance parts.
    """

    query_attention: nn.Linear
    query_value: nn.Linear
    key_attention: nn.Linear
    key_value: nn.Linear
    distance_attention: nn.Linear
    distance_value: nn.Linear
    attention_norm: nn.LayerNorm
    attention_logit: nn.Linear
    value_norm: nn.LayerNorm
    value_out: nn.Sequential

    def _add_attention_layers(self, w: int) -> None:
        """Register the block's layers (in this order: their names and order are those of the saved files)."""
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

    def _site_parts(self, x: torch.Tensor) -> tuple[Pair, Pair]:
        """Query and key parts of the first pair layers from site vectors ``x``: (n_sites, width) each."""
        return (self.query_attention(x), self.query_value(x)), (self.key_attention(x), self.key_value(x))

    def _distance_parts(self, e: torch.Tensor) -> Pair:
        """Distance parts of the first pair layers from embedded distances ``e``: (n_distances, width) each."""
        return self.distance_attention(e), self.distance_value(e)

    def _pool(
        self,
        query: Pair,
        key: Pair,
        key_index: torch.Tensor,
        distance: Pair,
        distance_index: torch.Tensor,
        key_mask: torch.Tensor,
        chunks: RowChunks,
        compiled: bool,
    ) -> torch.Tensor:
        """The block's attention-weighted sums of values, (n_rows, width), chunk by chunk."""
        value_linear, _, out_norm = self.value_out
        layers = (
            (self.attention_norm.weight, self.attention_norm.bias),
            self.attention_logit.weight,
            self.attention_logit.bias,
            (self.value_norm.weight, self.value_norm.bias),
            value_linear.weight,
            value_linear.bias,
            (out_norm.weight, out_norm.bias),
        )
        # the attention and value parts side by side: one gather of rows twice as wide instead of two
        query_both, key_both, distance_both = (torch.cat(part, dim=-1) for part in (query, key, distance))
        gathered = compiled and not torch.is_grad_enabled()
        per_chunk = []
        for rows, n_keys in chunks:
            row_keys, row_distances, row_mask = (
                key_index[rows, :n_keys],
                distance_index[rows, :n_keys],
                key_mask[rows, :n_keys],
            )
            if gathered:
                pooled = GATHERED_ATTENTION_POOL(
                    query_both[rows], key_both, row_keys, distance_both, row_distances, row_mask, layers, compiled=True
                )
            else:
                pairs = pair_input(query_both[rows], key_both, distance_both, row_keys, row_distances)
                pooled = ATTENTION_POOL(pairs, row_mask, layers, compiled=compiled)
            per_chunk.append(pooled)
        return chunks.gather(per_chunk)


class AttentionBlock(_AttentionLayers):
    """A further attention block of the local encoder: each site's vector -> a new one from its keys' vectors.

    The layers of the first block (which lives on ``LocalEncoder`` itself), fed
    with the previous block's site vectors instead of the site embedding.
    """

    def __init__(self, width: int):
        super().__init__()
        self._add_attention_layers(width)


class LocalEncoder(_AttentionLayers):
    """Attention over supercell sites -> one vector per unique site."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        w = config.width
        self.site_embedding = hidden_layer(config.n_site_features, w)
        self.expand_distances = DistanceExpansion(config.n_rbf, config.rbf_cutoff)
        self.distance_embedding = hidden_layer(config.n_distance_features, w)
        self._add_attention_layers(w)  # the first block
        self.mu = nn.Linear(w, config.local_dim)
        self.logvar = nn.Linear(w, config.local_dim)
        self.blocks = nn.ModuleList(AttentionBlock(w) for _ in range(config.n_blocks - 1))  # after the first
        self.compiled_pairs = False  # see dim_sklearn.nn.compiled.set_compiled

    @property
    def further_blocks(self) -> list[AttentionBlock]:
        """The attention blocks after the first (none by default)."""
        return cast(list[AttentionBlock], list(self.blocks))

    def forward(
        self,
        site_features: torch.Tensor,
        key_index: torch.Tensor,
        distance_values: torch.Tensor,
        distance_index: torch.Tensor,
        key_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Local vectors of every query site.

        Parameters
        ----------
        site_features : (n_sites, n_features)
        key_index : (n_sites, max_keys) rows of ``site_features`` the keys are images of
        distance_values : (n_distances,) the distinct query-key distances
        distance_index : (n_sites, max_keys) position of each pair's distance in ``distance_values``
        key_mask : (n_sites, max_keys) bool, False at padding

        Returns
        -------
        mu : (n_sites, local_dim)
        logvar : (n_sites, local_dim)
        """
        query, key = self.project_sites(site_features)
        return self.attend(query, key, key_index, self.project_distances(distance_values), distance_index, key_mask)

    def project_sites(self, site_features: torch.Tensor) -> tuple[Pair, Pair]:
        """Query and key parts of the first block's first pair layers, per site: (n_sites, width) each."""
        return self._site_parts(self.site_embedding(site_features))

    def project_distances(self, distance_values: torch.Tensor) -> list[Pair]:
        """Distance parts of every block's first pair layers, per distinct distance: (n_distances, width) each."""
        e = self.distance_embedding(self.expand_distances(distance_values))
        return [self._distance_parts(e), *(block._distance_parts(e) for block in self.further_blocks)]

    def attend(
        self,
        query: Pair,
        key: Pair,
        key_index: torch.Tensor,
        distance: list[Pair],
        distance_index: torch.Tensor,
        key_mask: torch.Tensor,
        chunks: RowChunks | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention of every query row over its keys, through every block.

        Parameters
        ----------
        query : per-row projections from ``project_sites``
        key : per-site projections from ``project_sites``; with further blocks, one row per query row (the
            keys of the next block are the query rows' vectors, indexed by the same ``key_index``)
        key_index : (n_rows, max_keys) rows of ``key``
        distance : per-distance projections from ``project_distances``
        distance_index : (n_rows, max_keys)
        key_mask : (n_rows, max_keys)
        chunks : RowChunks, optional
            How to split the rows (by default from ``key_mask``); the result does not depend on it.
        """
        chunks = chunks or RowChunks(key_mask.sum(-1))
        geometry = (distance_index, key_mask, chunks, self.compiled_pairs)
        pooled = self._pool(query, key, key_index, distance[0], *geometry)
        for block, block_distance in zip(self.further_blocks, distance[1:], strict=True):
            query, key = block._site_parts(pooled)
            pooled = block._pool(query, key, key_index, block_distance, *geometry)
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
        """Crystal vectors mu_g of a ``dim_sklearn.pointsets.PointSetBatch``, shape (n_crystals, global_dim)."""
        local, _ = self.local(
            batch.site_features, batch.key_index, batch.distance_values, batch.distance_index, batch.key_mask
        )
        crystal, _ = self.global_(local, batch.site_crystal, batch.n_crystals)
        return crystal
