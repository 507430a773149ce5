"""The original, larger supervised Site-Net (docs/method.md, section 2), for training from scratch.

Site input: a learned 92-d element embedding beside the scaled Magpie
properties (and oxidation state) of each unique site. Pair input: the
query-key distance embedded to ``heads * pair_dim``. Two attention blocks; in
each, every pair ``[x_i, x_j, e_ij]`` feeds, per head, an attention MLP (hidden
``attention_hidden``, softmax over the keys) and a value layer (``head_dim``),
the heads' attention-weighted values are concatenated into the new site
vector, and the pair features are updated from the same pair input. Then each
site goes to ``pre_pool`` features, the crystal's unique sites are averaged and
three ``post_pool`` layers follow; the regressor adds a Linear to one output.
With the defaults the trunk and its output layer hold about 300k parameters
(the paper: about 304k). Hidden layers are Linear -> mish -> LayerNorm.

As in the compact encoder, each first pair layer is computed as the sum of a
query, a key and a pair projection: the same function as a Linear on the
concatenated pair, without materialising it.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from .._utils import check_fields, integer
from .activations import mish, mish_plain
from .compiled import PairBlock
from .encoder import MAX_WIDTH, RowChunks, gather_rows, hidden_layer, segment_mean

if TYPE_CHECKING:
    from ..pointsets.batching import PointSetBatch

__all__ = ["SiteNet", "SiteNetConfig"]


@dataclass(frozen=True)
class SiteNetConfig:
    """Sizes of the original Site-Net (defaults: the paper's), each an integer from 1 to
    ``dim_sklearn.nn.encoder.MAX_WIDTH``."""

    n_site_features: int = 8
    n_elements: int = 95
    embedding_dim: int = 92
    heads: int = 3
    head_dim: int = 30
    pair_dim: int = 16
    attention_hidden: int = 225
    blocks: int = 2
    pre_pool: int = 94
    post_pool: int = 200
    post_pool_layers: int = 3

    def __post_init__(self) -> None:
        check_fields(self, **{f.name: integer(1, MAX_WIDTH) for f in fields(self)})

    @property
    def output_dim(self) -> int:
        """Width of the crystal vector the trunk returns."""
        return self.post_pool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _PairLayer(nn.Module):
    """The weights of a Linear on ``[x_i, x_j, e_ij]`` as its query, key and pair parts (``_AttentionBlock``
    sums them on the pairs)."""

    def __init__(self, n_site: int, n_pair: int, n_out: int):
        super().__init__()
        self.query = nn.Linear(n_site, n_out)
        self.key = nn.Linear(n_site, n_out, bias=False)
        self.pair = nn.Linear(n_pair, n_out, bias=False)


def _attention_block(activation):
    def attention_block(first, key_mask, layers, widths):
        attention_norm, attention_out_weight, attention_out_bias, value_norm, pair_norm = layers
        n_attention, n_value, heads = widths
        attention_in, value_in, pair_in = first.split(
            [n_attention, n_value, first.shape[-1] - n_attention - n_value], -1
        )
        hidden = F.layer_norm(activation(attention_in), (n_attention,), *attention_norm)
        logits = F.linear(hidden, attention_out_weight, attention_out_bias)
        weights = torch.softmax(logits.masked_fill(~key_mask.unsqueeze(-1), float("-inf")), dim=1)  # (S, K, heads)
        values = F.layer_norm(activation(value_in), (n_value,), *value_norm)
        values = values.view(*values.shape[:2], heads, n_value // heads)
        new_sites = torch.einsum("skh,skhd->shd", weights, values).flatten(1)
        if pair_in.shape[-1] == 0:  # the last block: its pair features are not used
            return new_sites, pair_in
        return new_sites, F.layer_norm(activation(pair_in), pair_in.shape[-1:], *pair_norm)

    return attention_block


ATTENTION_BLOCK = PairBlock(_attention_block(mish), _attention_block(mish_plain), dynamic_dims=((0, 1), (0, 1)))
"""The pair-level part of a Site-Net attention block, from the summed first pair layers (attention, value
and pair parts side by side) to the new site vectors and pair features."""


class _AttentionBlock(nn.Module):
    """Multi-head attention over the keys that also updates the pair features."""

    def __init__(self, n_site: int, config: SiteNetConfig):
        super().__init__()
        n_pair = config.heads * config.pair_dim
        self.heads, self.head_dim = config.heads, config.head_dim
        self.attention_in = _PairLayer(n_site, n_pair, config.attention_hidden)
        self.attention_norm = nn.LayerNorm(config.attention_hidden)
        self.attention_out = nn.Linear(config.attention_hidden, config.heads)
        self.value_in = _PairLayer(n_site, n_pair, config.heads * config.head_dim)
        self.value_norm = nn.LayerNorm(config.heads * config.head_dim)
        self.pair_in = _PairLayer(n_site, n_pair, n_pair)
        self.pair_norm = nn.LayerNorm(n_pair)
        self.compiled_pairs = False  # see dim_sklearn.nn.compiled.set_compiled

    def forward(
        self,
        sites: torch.Tensor,
        pairs: list[torch.Tensor],
        key_index: torch.Tensor,
        key_mask: torch.Tensor,
        chunks: RowChunks,
        update_pairs: bool = True,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """New site vectors (n_sites, heads * head_dim) and, per chunk of rows, new pair features.

        ``pairs`` holds one (rows, keys, n_pair) tensor per chunk of ``chunks``;
        without ``update_pairs`` (the last block) the pair features are not computed.
        """
        layers = [self.attention_in, self.value_in, *([self.pair_in] if update_pairs else [])]
        # the three first pair layers side by side: one gather and one sum of rows as wide as all three
        query = torch.cat([layer.query(sites) for layer in layers], dim=-1)
        key = torch.cat([layer.key(sites) for layer in layers], dim=-1)
        pair_weight = torch.cat([layer.pair.weight for layer in layers])
        norms = (
            (self.attention_norm.weight, self.attention_norm.bias),
            self.attention_out.weight,
            self.attention_out.bias,
            (self.value_norm.weight, self.value_norm.bias),
            (self.pair_norm.weight, self.pair_norm.bias),
        )
        widths = (self.attention_norm.normalized_shape[0], self.heads * self.head_dim, self.heads)
        new_sites, new_pairs = [], []
        for (rows, n_keys), chunk_pairs in zip(chunks, pairs):
            # in-place only on the fresh gathered tensor, never on a view of it (see encoder.pair_input)
            summed = key.index_select(0, key_index[rows, :n_keys].reshape(-1))
            summed.add_(F.linear(chunk_pairs, pair_weight).view(summed.shape))
            first = summed.view(*chunk_pairs.shape[:2], -1) + query[rows].unsqueeze(1)
            chunk_sites, chunk_new_pairs = ATTENTION_BLOCK(
                first, key_mask[rows, :n_keys], norms, widths, compiled=self.compiled_pairs
            )
            new_sites.append(chunk_sites)
            new_pairs.append(chunk_new_pairs)
        return chunks.gather(new_sites), new_pairs


class SiteNet(nn.Module):
    """The original Site-Net trunk: ``forward(batch)`` gives (n_crystals, post_pool) crystal vectors."""

    def __init__(self, config: SiteNetConfig | None = None):
        super().__init__()
        self.config = config = config or SiteNetConfig()
        n_site = config.embedding_dim + config.n_site_features
        n_pair = config.heads * config.pair_dim
        self.element_embedding = nn.Embedding(config.n_elements, config.embedding_dim)
        self.distance_embedding = hidden_layer(1, n_pair)
        blocks = []
        for _ in range(config.blocks):
            blocks.append(_AttentionBlock(n_site, config))
            n_site = config.heads * config.head_dim
        self.blocks = nn.ModuleList(blocks)
        self.pre_pool = hidden_layer(n_site, config.pre_pool)
        widths = [config.pre_pool] + [config.post_pool] * config.post_pool_layers
        self.post_pool = nn.Sequential(*(hidden_layer(a, b) for a, b in itertools.pairwise(widths)))

    def forward(self, batch: PointSetBatch) -> torch.Tensor:
        sites = torch.cat([self.element_embedding(batch.atomic_numbers), batch.site_features], dim=-1)
        chunks = RowChunks(batch.key_mask.sum(-1))
        # each distinct distance embedded once, then gathered onto the pairs of each chunk of rows
        distances = self.distance_embedding(batch.distance_values.unsqueeze(-1))
        pairs = [gather_rows(distances, batch.distance_index[rows, :n_keys]) for rows, n_keys in chunks]
        for number, block in enumerate(self.blocks, start=1):
            sites, pairs = block(
                sites, pairs, batch.key_index, batch.key_mask, chunks, update_pairs=number < len(self.blocks)
            )
        pooled = segment_mean(self.pre_pool(sites), batch.site_crystal, batch.n_crystals)
        return self.post_pool(pooled)
