"""The local Deep InfoMax terms of a chunk of rows in one compiled pass, forward and backward.

The local objective scores every site against four or five environments (its
own, and the fake ones of ``DeepInfoMax``), each a (rows, keys, width) pair
tensor ``mish(neighbour_rk + distance_rk)`` reduced against the site's folded
critic vector. Left to autograd, each environment is its own block with its
own gathers, and a compiler's generated backward of all of them together
writes a dozen pair-sized intermediates. ``local_terms`` is a
``torch.autograd.Function`` whose forward and backward are each one compiled
function with the gathers inside: the forward reads the two small tables
(neighbour species per site, distance embeddings per distinct distance)
through the indices and keeps only the scores; the backward recomputes
mish and its derivative from the same tables and writes one gradient per
distinct pair tensor (own, partner and scrambled neighbours; own and other
distances), which ``index_add_`` sums into the tables' gradients.

The terms are the same functions as ``EnvironmentCritic.score`` followed by
``DeepInfoMax``'s weighted softplus (its eager path); the two agree to float32
rounding (tests/nn/test_compiled.py).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .compiled import PairBlock

__all__ = ["local_terms"]

TERMS = ((0, 0, 0), (1, 1, 1), (0, 1, 1), (1, 0, 0), (2, 0, 0))
"""(neighbour set, distance set, weight set) of each term: the positive (own neighbours on own distances)
first, then the negatives all fake (partner's neighbours on the partner's distances), fake distances, fake
composition and scrambled (own neighbours shuffled, on own distances). Neighbour sets: own, partner,
scrambled; distance and weight sets: own, other (the partner's)."""


def _tanh_softplus(x: torch.Tensor) -> torch.Tensor:
    return 1 - 2 / ((1 + torch.exp(x)).square() + 1)


def _forward(species, distance, folded, bias, own, partner, scrambled, own_d, other_d, own_w, other_w, n_terms):
    """Positive and mean negative term per row, and the scores of every term (n_terms, rows, keys)."""
    neighbours = (species[own], species[partner], species[scrambled])
    distances, weights = (distance[own_d], distance[other_d]), (own_w, other_w)
    folded, bias = folded.unsqueeze(1), bias.unsqueeze(-1)
    scores, terms = [], []
    for t, (n, d, w) in enumerate(TERMS[:n_terms]):
        hidden = neighbours[n] + distances[d]
        score = (hidden * _tanh_softplus(hidden) * folded).sum(-1) + bias
        scores.append(score)
        terms.append((weights[w] * F.softplus(-score if t == 0 else score)).sum(-1))
    return terms[0], sum(terms[1:]) / (n_terms - 1), torch.stack(scores)


def _backward(
    species, distance, folded, own, partner, scrambled, own_d, other_d, own_w, other_w, scores, g_pos, g_neg, n_terms
):
    """Gradients of the pair tensors (per neighbour set and distance set), of ``folded`` and of ``bias``."""
    neighbours = (species[own], species[partner], species[scrambled])
    distances, weights = (distance[own_d], distance[other_d]), (own_w, other_w)
    folded = folded.unsqueeze(1)
    g_pos, g_neg = g_pos.unsqueeze(-1), g_neg.unsqueeze(-1) / (n_terms - 1)
    neighbour_grads, distance_grads, folded_grad, bias_grad = [0, 0, 0], [0, 0], 0, 0
    for t, (n, d, w) in enumerate(TERMS[:n_terms]):
        # d term / d score: -sigmoid(-s) for the positive softplus(-s), sigmoid(s) for the negatives
        if t == 0:
            score_grad = -g_pos * weights[w] * torch.sigmoid(-scores[t])
        else:
            score_grad = g_neg * weights[w] * torch.sigmoid(scores[t])
        hidden = neighbours[n] + distances[d]
        exp = torch.exp(hidden)
        tanh_sp = 1 - 2 / ((1 + exp).square() + 1)
        # d mish / dx = tanh(softplus(x)) + x sigmoid(x) (1 - tanh(softplus(x))^2)
        mish_grad = tanh_sp + hidden * (1 - 1 / (1 + exp)) * (1 - tanh_sp * tanh_sp)  # sigmoid, also at exp = inf
        pair_grad = score_grad.unsqueeze(-1) * folded * mish_grad
        neighbour_grads[n] = neighbour_grads[n] + pair_grad
        distance_grads[d] = distance_grads[d] + pair_grad
        folded_grad = folded_grad + (score_grad.unsqueeze(-1) * hidden * tanh_sp).sum(1)
        bias_grad = bias_grad + score_grad.sum(-1)
    return (*neighbour_grads[: 3 if n_terms == 5 else 2], *distance_grads, folded_grad, bias_grad)


_PAIR_INDEX = (0, 1)
FORWARD = PairBlock(_forward, _forward, dynamic_dims=((0,), (0,), (0,), (0,), *[_PAIR_INDEX] * 7))
BACKWARD = PairBlock(_backward, _backward, dynamic_dims=((0,), (0,), (0,), *[_PAIR_INDEX] * 7, (1, 2), (0,), (0,)))


class _LocalTerms(torch.autograd.Function):
    @staticmethod
    def forward(ctx, species, distance, folded, bias, compiled, own, partner, scrambled, *pair_args):
        n_terms = 4 if scrambled is None else 5
        index_args = (own, partner, own if scrambled is None else scrambled, *pair_args)  # own: unread with 4 terms
        positive, negative, scores = FORWARD(species, distance, folded, bias, *index_args, n_terms, compiled=compiled)
        ctx.save_for_backward(species, distance, folded, *index_args, scores)
        ctx.n_terms, ctx.compiled = n_terms, compiled
        return positive, negative

    @staticmethod
    def backward(ctx, g_pos, g_neg):
        species, distance, folded, *index_args, scores = ctx.saved_tensors
        grads = BACKWARD(
            species,
            distance,
            folded,
            *index_args,
            scores,
            g_pos.contiguous(),
            g_neg.contiguous(),
            ctx.n_terms,
            compiled=ctx.compiled,
        )
        *pair_grads, folded_grad, bias_grad = grads
        neighbour_grads, distance_grads = pair_grads[:-2], pair_grads[-2:]
        own, partner, scrambled, own_d, other_d = index_args[:5]
        species_grad = torch.zeros_like(species)
        for index, grad in zip((own, partner, scrambled), neighbour_grads):  # two or three neighbour sets
            species_grad.index_add_(0, index.reshape(-1), grad.reshape(-1, species.shape[-1]))
        distance_grad = torch.zeros_like(distance)
        for index, grad in zip((own_d, other_d), distance_grads):
            distance_grad.index_add_(0, index.reshape(-1), grad.reshape(-1, distance.shape[-1]))
        return species_grad, distance_grad, folded_grad, bias_grad, *[None] * (len(index_args) + 1)


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def local_terms(
    species: torch.Tensor,
    distance: torch.Tensor,
    folded: torch.Tensor,
    bias: torch.Tensor,
    keys: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None],
    distance_index: tuple[torch.Tensor, torch.Tensor],
    weights: tuple[torch.Tensor, torch.Tensor],
    compiled: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and mean negative local terms of a chunk of rows: (rows,) each.

    Parameters
    ----------
    species : (n_sites, width)
        ``neighbour_species`` of every site of the batch.
    distance : (n_distances, width)
        ``embed_distances`` of the batch's distinct distances.
    folded : (rows, width)
        The rows' critic vectors folded through ``neighbour_out``'s weight.
    bias : (rows,)
        The rows' critic vectors against ``neighbour_out``'s bias.
    keys : own, partner's and scrambled (or None: four terms) key indices, (rows, keys) each
    distance_index : own and the partner's distance indices, (rows, keys) each
    weights : own and the partner's pair weights, (rows, keys) each
    compiled : bool, default=True
        Run the compiled forward and backward (False: the same functions eagerly,
        for tests; slower and heavier than ``DeepInfoMax``'s own eager path).
    """
    # float32 at least, under a GPU's bfloat16 autocast too: the function returns gradients of its inputs' type
    tables = [_at_least_float32(t) for t in (species, distance, folded, bias)]
    pair_weights = [_at_least_float32(w) for w in weights]
    positive, negative = _LocalTerms.apply(*tables, compiled, *keys, *distance_index, *pair_weights)
    return positive, negative
