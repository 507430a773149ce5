"""Crystal -> one number: an encoder, optional composition descriptors, the prediction head, target scaling and an
optional floor."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from ..pointsets.batching import PointSetBatch

__all__ = ["SiteNetModel"]


class SiteNetModel(nn.Module):
    """``head(encoder(batch))`` on the target's scale, or ``head([encoder(batch), descriptors])``.

    Parameters
    ----------
    encoder : nn.Module
        Maps a ``dim_sklearn.pointsets.PointSetBatch`` to crystal vectors
        (n_crystals, encoder_dim): a pretrained or fresh
        ``dim_sklearn.nn.SiteNetEncoder``, or the original
        ``dim_sklearn.nn.SiteNet``.
    head : nn.Module
        Crystal vector (followed by the standardised descriptors, when there
        are any) -> one standardised value per crystal.
    target_mean : float, default=0.0
        Prediction = ``target_mean + target_scale * head(...)``; kept as a buffer
        so that it travels with ``state_dict``.
    target_scale : float, default=1.0
        Multiplies ``head(...)`` in that prediction; also a buffer.
    nonnegative : bool, default=False
        Clamp predictions at zero in the forward pass while passing the gradient
        through unchanged (the original Site-Net's band-gap output).
    descriptor_stats : array of shape (4, n_descriptors), optional
        Per-crystal descriptors (e.g. of the composition) the head also sees:
        ``forward`` then takes them, clips each to the range of the training
        structures (rows 2 and 3: low, high), standardises it with rows 0 and
        1 (mean, scale) and sets missing values (NaN) to 0, the mean. A
        buffer, like the target scaling. Clipping keeps a value never seen in
        training (a rare element's property) from reaching the head many
        standard deviations out.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        target_mean: float = 0.0,
        target_scale: float = 1.0,
        nonnegative: bool = False,
        descriptor_stats: np.ndarray | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_scale", torch.tensor(float(target_scale)))
        self.nonnegative = nonnegative
        self.n_descriptors = 0
        if descriptor_stats is not None:
            stats = torch.as_tensor(np.asarray(descriptor_stats), dtype=torch.float32)
            if stats.ndim != 2 or stats.shape[0] != 4:
                raise ValueError(f"descriptor_stats must have shape (4, n_descriptors), got {tuple(stats.shape)}")
            self.n_descriptors = stats.shape[1]
            self.register_buffer("descriptor_stats", stats)

    def forward(self, batch: PointSetBatch, descriptors: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions of shape (n_crystals, 1); ``descriptors`` (n_crystals, n_descriptors) when the model has them.

        Raises
        ------
        ValueError
            ``descriptors`` missing, unexpected or of the wrong width.
        """
        vectors = self.encoder(batch)
        if (descriptors is None) != (self.n_descriptors == 0) or (
            descriptors is not None and descriptors.shape[-1] != self.n_descriptors
        ):
            got = "none" if descriptors is None else f"{descriptors.shape[-1]} columns"
            raise ValueError(f"this model takes {self.n_descriptors} descriptors per crystal, got {got}")
        if descriptors is not None:
            stats = cast("torch.Tensor", self.descriptor_stats)
            mean, scale, low, high = stats.unbind(0)
            scaled = (torch.minimum(torch.maximum(descriptors.to(vectors.dtype), low), high) - mean) / scale
            vectors = torch.cat([vectors, torch.nan_to_num(scaled, nan=0.0)], dim=-1)
        prediction = self.target_mean + self.target_scale * self.head(vectors)
        if self.nonnegative:
            prediction = prediction + (prediction.clamp_min(0) - prediction).detach()
        return prediction
