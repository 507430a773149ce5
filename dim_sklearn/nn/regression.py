"""Crystal -> one number: an encoder, the prediction head, target scaling and an optional floor."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ..pointsets.batching import PointSetBatch

__all__ = ["SiteNetModel"]


class SiteNetModel(nn.Module):
    """``head(encoder(batch))`` on the target's scale.

    Parameters
    ----------
    encoder : nn.Module
        Maps a ``dim_sklearn.pointsets.PointSetBatch`` to crystal vectors
        (n_crystals, encoder_dim): a pretrained or fresh
        ``dim_sklearn.nn.SiteNetEncoder``, or the original
        ``dim_sklearn.nn.SiteNet``.
    head : nn.Module
        Crystal vector -> one standardised value per crystal.
    target_mean : float, default=0.0
        Prediction = ``target_mean + target_scale * head(...)``; kept as a buffer
        so that it travels with ``state_dict``.
    target_scale : float, default=1.0
        Multiplies ``head(...)`` in that prediction; also a buffer.
    nonnegative : bool, default=False
        Clamp predictions at zero in the forward pass while passing the gradient
        through unchanged (the original Site-Net's band-gap output).
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        target_mean: float = 0.0,
        target_scale: float = 1.0,
        nonnegative: bool = False,
    ):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_scale", torch.tensor(float(target_scale)))
        self.nonnegative = nonnegative

    def forward(self, batch: PointSetBatch) -> torch.Tensor:
        """Predictions of shape (n_crystals, 1)."""
        prediction = self.target_mean + self.target_scale * self.head(self.encoder(batch))
        if self.nonnegative:
            prediction = prediction + (prediction.clamp_min(0) - prediction).detach()
        return prediction
