"""Early stopping on a monitored loss, keeping a copy of the best weights."""

from __future__ import annotations

import copy
import math
from numbers import Integral
from typing import Any

import torch

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Track a loss per epoch: the best value, its epoch and weights, and when to stop.

    ``patience`` means what it means for skorch's ``EarlyStopping`` (and so for
    :class:`~dim_sklearn.SiteNetRegressor`): training stops once ``patience``
    epochs in a row have not improved the monitored loss. One difference: here
    any decrease counts as an improvement, where skorch's default asks for a
    relative decrease of at least 1e-4.

    Parameters
    ----------
    patience : int
        Epochs in a row without improvement after which :attr:`should_stop` is True.

    Attributes
    ----------
    best_loss : float
        Lowest loss seen (infinity before the first epoch).
    best_epoch : int
        Its epoch (0 before the first epoch).
    bad_epochs : int
        Epochs since the last improvement.
    best_state : dict or None
        A copy of the model's ``state_dict`` at ``best_epoch`` (None before the first).
    """

    def __init__(self, patience: int):
        if isinstance(patience, bool) or not isinstance(patience, Integral) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        self.patience: int = int(patience)
        self.best_loss: float = math.inf
        self.best_epoch: int = 0
        self.bad_epochs: int = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` epochs in a row have gone by without improvement."""
        return self.bad_epochs >= self.patience

    def update(self, epoch: int, loss: float, model: torch.nn.Module) -> bool:
        """Record ``epoch``'s ``loss``; on an improvement keep a copy of ``model``'s weights. Whether it improved."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
            return True
        self.bad_epochs += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the tracker."""
        return {
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take up the tracking where :meth:`state_dict` left it."""
        self.best_loss, self.best_epoch, self.bad_epochs, self.best_state = (
            state["best_loss"],
            state["best_epoch"],
            state["bad_epochs"],
            state["best_state"],
        )
