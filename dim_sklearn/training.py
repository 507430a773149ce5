"""Parts of a training loop shared by Deep InfoMax pretraining and fine-tuning.

[`pretrain`][dim_sklearn.pretrain.pretrain] and
[`SiteNetRegressor`][dim_sklearn.SiteNetRegressor] (through its skorch callback
``divergence_guard``) stop a run the same way when it diverges:
[`diverged`][dim_sklearn.training.diverged] tells an epoch whose training loss
or weights are NaN or infinite,
[`LastFiniteWeights`][dim_sklearn.training.LastFiniteWeights] keeps the weights
to fall back on, and [`warn_diverged`][dim_sklearn.training.warn_diverged]
words the warning. [`EarlyStopping`][dim_sklearn.training.EarlyStopping] is the
pretraining loop's stopping rule (fine-tuning uses skorch's, which counts
``patience`` the same way), and
[`site_counts`][dim_sklearn.training.site_counts] gives the sizes both loops
batch by.
"""

from __future__ import annotations

import copy
import math
import warnings
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

__all__ = ["EarlyStopping", "LastFiniteWeights", "diverged", "site_counts", "warn_diverged", "weights_finite"]


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter of ``module`` is finite (no NaN, no infinity)."""
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def diverged(loss: float, module: torch.nn.Module) -> bool:
    """Whether an epoch's training ``loss`` or any parameter of ``module`` is NaN or infinite."""
    return not (math.isfinite(loss) and weights_finite(module))


def warn_diverged(run: str, epoch: int, loss: float, kept_epoch: int, stacklevel: int = 2) -> None:
    """Warn that ``run`` diverged in ``epoch`` and stopped, keeping the weights of ``kept_epoch``.

    Parameters
    ----------
    run : str
        What diverged, as the message starts ("fine-tuning").
    epoch : int
        The epoch whose training loss or weights were not finite.
    loss : float
        That epoch's training loss.
    kept_epoch : int
        The epoch whose weights the model keeps; 0 for the initial weights.
    stacklevel : int, default=2
        As in ``warnings.warn``, counted from the caller of this function.
    """
    kept = f"the weights of epoch {kept_epoch}" if kept_epoch > 0 else "the initial weights"
    warnings.warn(
        f"{run} diverged in epoch {epoch} (training loss {loss}); stopped, keeping {kept}: lower lr",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )


class LastFiniteWeights:
    """A copy of a module's weights after its last finite epoch, to put back after one that diverged.

    Parameters
    ----------
    module : torch.nn.Module
        The module trained; a copy of its present weights is taken at once.
    epoch : int, default=0
        The epoch those present weights are of (0: the initial weights).

    Attributes
    ----------
    epoch : int
        The epoch of the kept weights.
    state : dict
        The kept copy of the module's ``state_dict``.
    """

    def __init__(self, module: torch.nn.Module, epoch: int = 0):
        self.epoch = epoch
        self.state: dict[str, torch.Tensor] = copy.deepcopy(module.state_dict())

    def update(self, epoch: int, loss: float, module: torch.nn.Module) -> bool:
        """Record ``epoch``; whether it stayed finite (see [`diverged`][dim_sklearn.training.diverged]).

        A finite epoch's weights replace the kept copy; after an epoch that
        diverged the kept weights are loaded back into ``module``.
        """
        if diverged(loss, module):
            module.load_state_dict(self.state)
            return False
        self.epoch, self.state = epoch, copy.deepcopy(module.state_dict())
        return True


class EarlyStopping:
    """Track a loss per epoch: the best value, its epoch and weights, and when to stop.

    ``patience`` means what it means for skorch's ``EarlyStopping`` (and so for
    [`SiteNetRegressor`][dim_sklearn.SiteNetRegressor]): training stops once ``patience``
    epochs in a row have not improved the monitored loss. One difference: here
    any decrease counts as an improvement, where skorch's default asks for a
    relative decrease of at least 1e-4.

    Parameters
    ----------
    patience : int
        Epochs in a row without improvement after which ``should_stop`` is True.

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
        """Take up the tracking where ``state_dict`` left it."""
        self.best_loss, self.best_epoch, self.bad_epochs, self.best_state = (
            state["best_loss"],
            state["best_epoch"],
            state["bad_epochs"],
            state["best_state"],
        )


def site_counts(data: Any) -> np.ndarray:
    """Unique sites of every crystal of ``data``, without reading point sets a store streams.

    Parameters
    ----------
    data : sequence of PointSet, or a collection with ``n_sites``, or a torch Subset of one
        Point sets; a [`CachedPointSets`][dim_sklearn.pointsets.CachedPointSets] or a
        ``CrystalDataset`` (their ``n_sites``); or a
        ``Subset`` of one of these.

    Returns
    -------
    ndarray of int
        One count per crystal, in order.

    Raises
    ------
    TypeError
        ``data`` is a torch Dataset without ``n_sites``.
    """
    if isinstance(data, Subset):
        return site_counts(data.dataset)[np.asarray(data.indices)]
    if hasattr(data, "n_sites"):
        return np.asarray(data.n_sites)
    if isinstance(data, Dataset):
        raise TypeError(f"site counts need point sets, a CrystalDataset or a Subset of one, got {type(data).__name__}")
    return np.array([p.n_sites for p in data])
