"""Mish, ``x * tanh(softplus(x))``, with a cheaper CPU kernel than torch's.

PyTorch's CPU mish kernels are slower than a handful of its cheap elementwise
kernels run one after the other, and mish is the most frequent operation on the
(sites x keys x width) pair tensors of Site-Net. With ``u = 1 + exp(x)``,
``tanh(softplus(x)) = tanh(log u) = (u^2 - 1) / (u^2 + 1) = 1 - 2 / (u^2 + 1)``:
one exp and cheap in-place arithmetic (no log1p, the slowest kernel on the
path; exp overflowing to inf gives exactly 1). Measured here on pair-sized
tensors: 1.4 ms against 2.2 ms via exp/log1p/tanh and 3.8 ms for torch's mish.
The backward uses the saved ``tanh(softplus(x))``. It agrees with
``torch.nn.functional.mish`` within 1.3e-6 in float32 over [-100, 100]
(measured), and to float64 rounding with its gradient (the tests).
"""

from __future__ import annotations

import torch
from torch import nn


def _tanh_softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(x).add_(1).square_().add_(1).reciprocal_().mul_(-2).add_(1)


class _MishFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        t = _tanh_softplus(x)
        ctx.save_for_backward(x, t)
        return x * t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, t = ctx.saved_tensors
        # d/dx [x tanh(sp(x))] = tanh(sp(x)) + x sigmoid(x) (1 - tanh(sp(x))^2)
        return torch.sigmoid(x).mul_(x).mul_(1 - t * t).add_(t).mul_(grad)


def mish_plain(x: torch.Tensor) -> torch.Tensor:
    """Mish in plain tensor operations (the formula of ``mish``), for ``torch.compile`` to fuse."""
    return x * (1 - 2 / ((1 + torch.exp(x)).square() + 1))


def mish(x: torch.Tensor) -> torch.Tensor:
    """Mish activation; torch's own kernel off the CPU."""
    if x.device.type != "cpu":
        return torch.nn.functional.mish(x)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return _tanh_softplus(x).mul_(x)
    return _MishFunction.apply(x)


class Mish(nn.Module):
    """Module form of ``mish``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish(x)
