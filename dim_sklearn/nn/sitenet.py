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
from .activations import mish
from .encoder import MAX_WIDTH, gather_rows, hidden_layer, segment_mean

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
    """Linear on ``[x_i, x_j, e_ij]`` as query + gathered key + pair projections."""

    def __init__(self, n_site: int, n_pair: int, n_out: int):
        super().__init__()
        self.query = nn.Linear(n_site, n_out)
        self.key = nn.Linear(n_site, n_out, bias=False)
        self.pair = nn.Linear(n_pair, n_out, bias=False)

    def forward(self, sites: torch.Tensor, pairs: torch.Tensor, key_index: torch.Tensor) -> torch.Tensor:
        return self.query(sites).unsqueeze(1) + F.embedding(key_index, self.key(sites)) + self.pair(pairs)


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

    def forward(
        self, sites: torch.Tensor, pairs: torch.Tensor, key_index: torch.Tensor, key_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_sites, n_keys = key_index.shape
        hidden = self.attention_norm(mish(self.attention_in(sites, pairs, key_index)))
        logits = self.attention_out(hidden).masked_fill(~key_mask.unsqueeze(-1), float("-inf"))
        weights = torch.softmax(logits, dim=1)  # (S, K, heads)
        values = self.value_norm(mish(self.value_in(sites, pairs, key_index)))
        values = values.view(n_sites, n_keys, self.heads, self.head_dim)
        new_sites = torch.einsum("skh,skhd->shd", weights, values).reshape(n_sites, -1)
        new_pairs = self.pair_norm(mish(self.pair_in(sites, pairs, key_index)))
        return new_sites, new_pairs


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
        # each distinct distance embedded once, then gathered onto the pairs
        pairs = gather_rows(self.distance_embedding(batch.distance_values.unsqueeze(-1)), batch.distance_index)
        for block in self.blocks:
            sites, pairs = block(sites, pairs, batch.key_index, batch.key_mask)
        pooled = segment_mean(self.pre_pool(sites), batch.site_crystal, batch.n_crystals)
        return self.post_pool(pooled)
