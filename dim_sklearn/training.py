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

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

__all__ = [
    "FLAT_OPTIMIZERS",
    "EarlyStopping",
    "LastFiniteWeights",
    "diverged",
    "flat_groups",
    "link_flat_groups",
    "site_counts",
    "unlink_flat_groups",
    "warn_diverged",
    "weights_copy",
    "weights_finite",
]

FLAT_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
    torch.optim.Adadelta,
)
"""Optimisers whose update of a parameter is element-wise: given one flat tensor per group, they compute the same
numbers for every element as given the group's parameters one by one."""

FLAT_NAMES = "flat_names"
"""The key of a flat parameter group that names the parameters laid end to end in its one tensor."""


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter of ``module`` is finite (no NaN, no infinity)."""
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def weights_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s ``state_dict``, each tensor with storage of its own.

    Unlike ``copy.deepcopy``, which copies the whole storage that a view lives
    in (and pickles it once per view): parameters are views into one flat
    tensor while they train ([`link_flat_groups`][dim_sklearn.training.link_flat_groups]).
    """
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


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
        self.state: dict[str, torch.Tensor] = weights_copy(module)

    def update(self, epoch: int, loss: float, module: torch.nn.Module) -> bool:
        """Record ``epoch``; whether it stayed finite (see [`diverged`][dim_sklearn.training.diverged]).

        A finite epoch's weights replace the kept copy; after an epoch that
        diverged the kept weights are loaded back into ``module``.
        """
        if diverged(loss, module):
            module.load_state_dict(self.state)
            return False
        self.epoch, self.state = epoch, weights_copy(module)
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
            self.best_state = weights_copy(model)
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


def flat_groups(
    groups: Sequence[Mapping[str, Any]], named_parameters: Iterable[tuple[str, torch.nn.Parameter]]
) -> list[dict[str, Any]]:
    """Parameter groups for an element-wise optimiser, each group's parameters laid end to end in one new tensor.

    On the CPU an optimiser's step and a gradient norm cost a few kernels per
    parameter tensor; a model of some fifty small tensors trained on small
    batches spends a fifth of its step there. Given one flat tensor per group
    (a copy of the parameters' present values, with a zero gradient), an
    optimiser of [`FLAT_OPTIMIZERS`][dim_sklearn.training.FLAT_OPTIMIZERS] updates
    the whole group with a few kernels. The parameters become views into it for
    the time of a training run: [`link_flat_groups`][dim_sklearn.training.link_flat_groups].

    Parameters
    ----------
    groups : sequence of dict
        Parameter groups as torch optimisers take them: ``"params"``, a list of
        parameters, and the group's options.
    named_parameters : iterable of (str, Parameter)
        Names for the parameters of ``groups`` (a module's ``named_parameters()``).

    Returns
    -------
    list of dict
        The groups with ``"params"`` one flat parameter and ``"flat_names"`` the
        names of the parameters in it, in order.
    """
    names = {id(parameter): name for name, parameter in named_parameters}
    flat = []
    for group in groups:
        params = list(group["params"])
        with torch.no_grad():
            values = torch.cat([p.reshape(-1) for p in params])
        tensor = torch.nn.Parameter(values)
        tensor.grad = torch.zeros_like(values)
        flat.append({**group, "params": [tensor], FLAT_NAMES: [names[id(p)] for p in params]})
    return flat


def _flat_members(
    optimizer: torch.optim.Optimizer, named_parameters: Mapping[str, torch.nn.Parameter]
) -> Iterable[tuple[torch.nn.Parameter, list[torch.nn.Parameter]]]:
    """For each flat group of ``optimizer``: its flat tensor and the parameters it holds."""
    for group in optimizer.param_groups:
        if FLAT_NAMES in group:
            yield group["params"][0], [named_parameters[name] for name in group[FLAT_NAMES]]


def link_flat_groups(optimizer: torch.optim.Optimizer, named_parameters: Mapping[str, torch.nn.Parameter]) -> None:
    """Make the parameters of ``optimizer``'s flat groups views into their flat tensor, gradients likewise.

    Each parameter's present value is copied into its place first, so the
    module's weights stay what they are (loaded, resumed or trained elsewhere)
    and the optimiser's state carries on. While linked, the optimiser's step is
    the parameters' update, and gradients accumulate into the flat gradient:
    zero it in place (``zero_grad(set_to_none=False)``), never set it to None.
    Groups given as parameters (not by [`flat_groups`][dim_sklearn.training.flat_groups])
    are left alone.
    """
    for flat, params in _flat_members(optimizer, named_parameters):
        if flat.grad is None:
            flat.grad = torch.zeros_like(flat)
        offset = 0
        for param in params:
            size = param.numel()
            with torch.no_grad():
                flat[offset : offset + size].copy_(param.reshape(-1))
            param.data = flat.data[offset : offset + size].view_as(param)
            param.grad = flat.grad[offset : offset + size].view_as(param)
            offset += size


def unlink_flat_groups(optimizer: torch.optim.Optimizer, named_parameters: Mapping[str, torch.nn.Parameter]) -> None:
    """Give the parameters of ``optimizer``'s flat groups (and their gradients) storage of their own again.

    Values are kept. A module whose parameters are views into one tensor
    pickles that tensor once per parameter; after a training run they are
    separate tensors again, as any module's.
    """
    for _, params in _flat_members(optimizer, named_parameters):
        for param in params:
            param.data = param.data.clone()
            param.grad = None if param.grad is None else param.grad.clone()
