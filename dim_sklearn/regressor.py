"""SiteNetRegressor: skorch fine-tuning of a Site-Net encoder, pretrained with Deep InfoMax or not."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import warnings
from collections.abc import Iterator, Sequence, Sized
from typing import Any, ClassVar, cast

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils import InputTags, Tags
from skorch import NeuralNetRegressor
from skorch.callbacks import Callback, EarlyStopping, Freezer, GradientNormClipping, LRScheduler, ParamMapper
from skorch.dataset import ValidSplit
from skorch.utils import to_numpy
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import DataLoader, Dataset, Subset

from ._utils import (
    Rule,
    boolean,
    check_fields,
    either,
    instance_of,
    integer,
    one_of,
    optional,
    real,
    resolve_device,
    seed,
    spawn_seeds,
)
from .composition import COMPOSITION_DESCRIPTORS
from .encoder import PretrainedEncoder, resolve_encoder
from .nn import EncoderConfig, SiteNet, SiteNetConfig, SiteNetEncoder, SiteNetModel
from .nn.activations import Mish
from .nn.compiled import resolve_compile, set_compiled
from .pointsets import (
    PointSet,
    PointSetBatch,
    PointSetCache,
    PointSetConfig,
    SiteBudgetBatchSampler,
    as_structure_list,
    build_point_sets,
    collate_point_sets,
)
from .training import (
    FLAT_NAMES,
    FLAT_OPTIMIZERS,
    LastFiniteWeights,
    flat_groups,
    link_flat_groups,
    site_counts,
    unlink_flat_groups,
    warn_diverged,
)

__all__ = [
    "CrystalDataset",
    "DivergenceGuard",
    "ForeachGradientNormClipping",
    "SiteNetRegressor",
    "collate_labelled",
    "dataset_descriptors",
]

PRESETS = ("compact", "sitenet")
STARTS = ("encoder", "scratch")
"""The starts ``init="auto"`` fine-tunes from, in the order it tries them (a tie keeps the first)."""
INITS = (*STARTS, "auto")
LR_SCHEDULES = ("constant", "cosine")
AUTO_EPOCH_SAMPLES = 30_000
"""``max_epochs="auto"`` trains for this many structures seen, ``ceil(AUTO_EPOCH_SAMPLES / n)`` epochs for ``n``
labels, at most ``AUTO_MAX_EPOCHS``."""
AUTO_MAX_EPOCHS = 300
_ENCODER_WORDS = "a shipped encoder's name, a folder, a PretrainedEncoder"
_FEATURIZER: Rule = (
    "a fitted featurizer",
    lambda v: all(callable(getattr(v, method, None)) for method in ("fit", "transform")),
)
"""An estimator with ``fit`` and ``transform`` (``initialize`` then checks that it holds a fitted encoder)."""
VALIDATION_SPLIT = ValidSplit(0.05, random_state=0)
"""The default ``train_split``: 5% of the labels, the same draw for the same data."""


class CrystalDataset(Dataset):
    """Point sets with optional targets and descriptors; items are ``(PointSet, target row)``, or
    ``((PointSet, descriptor row), target row)`` with descriptors.

    Parameters
    ----------
    point_sets : sequence of PointSet
    y : array of shape (n, 1), optional
        Targets; a zero placeholder per item when absent (prediction).
    descriptors : array of shape (n, n_descriptors), optional
        Per-crystal descriptors for the head (``SiteNetRegressor(composition=...)``); NaN where missing.
    """

    def __init__(
        self, point_sets: Sequence[PointSet], y: np.ndarray | None = None, descriptors: np.ndarray | None = None
    ):
        self.point_sets = list(point_sets)
        self.y = None if y is None else np.asarray(y, dtype=np.float32).reshape(len(self.point_sets), -1)
        self.descriptors = (
            None if descriptors is None else np.asarray(descriptors, dtype=np.float64).reshape(len(self.point_sets), -1)
        )

    def __len__(self) -> int:
        return len(self.point_sets)

    def __getitem__(self, index: int) -> tuple[PointSet | tuple[PointSet, np.ndarray], np.ndarray]:
        target = self.y[index] if self.y is not None else np.zeros(1, dtype=np.float32)
        if self.descriptors is not None:
            return (self.point_sets[index], self.descriptors[index]), target
        return self.point_sets[index], target

    @property
    def n_sites(self) -> np.ndarray:
        """Unique sites of every crystal (the batch budget counts these)."""
        return np.array([p.n_sites for p in self.point_sets], dtype=np.int64)


def collate_labelled(items: Sequence[tuple[Any, np.ndarray]]) -> tuple[Any, torch.Tensor]:
    """``(PointSetBatch, targets of shape (n, 1))`` from ``CrystalDataset`` items; with descriptors,
    ``((PointSetBatch, descriptors of shape (n, n_descriptors)), targets)``."""
    inputs, targets = [x for x, _ in items], torch.from_numpy(np.stack([t for _, t in items]))
    if inputs and isinstance(inputs[0], tuple):
        descriptors = torch.from_numpy(np.stack([d for _, d in inputs]))
        return (collate_point_sets([p for p, _ in inputs]), descriptors), targets
    return collate_point_sets(inputs), targets


def dataset_descriptors(data: Any) -> np.ndarray | None:
    """The descriptors a ``CrystalDataset`` (or a ``Subset`` of one) carries, in its order; None when it has none."""
    if isinstance(data, Subset):
        descriptors = dataset_descriptors(data.dataset)
        return None if descriptors is None else descriptors[np.asarray(data.indices, dtype=np.int64)]
    return getattr(data, "descriptors", None) if isinstance(data, CrystalDataset) else None


def _as_targets(y: Any) -> np.ndarray | None:
    """Targets as float64 (n, 1); 1-D input is reshaped; complex and non-finite values and values beyond float32
    are refused."""
    if y is None:
        return None
    if np.iscomplexobj(y):
        raise ValueError("y holds complex values; SiteNetRegressor fits real targets")
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != 1:
        raise ValueError(f"SiteNetRegressor predicts one target: y must have shape (n,) or (n, 1), got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinite values")
    if np.abs(y).max(initial=0) > np.finfo(np.float32).max:
        raise ValueError(f"y holds values beyond float32 (up to {np.abs(y).max():.3g}); rescale it")
    return y


def _n_structures(X: Any) -> int:
    """How many structures ``X`` holds (a Dataset: its length)."""
    return len(cast("Sized", X)) if isinstance(X, Dataset) else len(as_structure_list(X))


def _training_targets(X: Any, y: Any, method: str) -> np.ndarray | None:
    """The targets of a fit as float64 (n, 1), after checking that there is something to fit on.

    A Dataset ``X`` may carry its own targets (then ``y`` may be None).

    Raises
    ------
    ValueError
        ``X`` holds no structures, ``y`` is None, or their lengths differ.
    """
    n_structures = _n_structures(X)
    if n_structures == 0:
        raise ValueError(f"X holds 0 structures; {method} needs at least one structure and its target")
    if y is None and not isinstance(X, Dataset):
        raise ValueError(f"y is None; {method} needs one target per structure of X")
    targets = _as_targets(y)
    if targets is not None and not isinstance(X, Dataset) and n_structures != len(targets):
        raise ValueError(f"X holds {n_structures} structures but y holds {len(targets)} targets; they must match")
    return targets


class ForeachGradientNormClipping(GradientNormClipping):
    """skorch's ``GradientNormClipping`` over the tensors the optimizer steps, with multi-tensor (foreach) norms.

    Where the optimizer holds each parameter group as one flat tensor
    ([`flat_groups`][dim_sklearn.training.flat_groups]), the norm and the
    scaling are one kernel each; otherwise one multi-tensor kernel over the
    parameters, the same norms, bit for bit, as torch's per-parameter loop.
    """

    def on_grad_computed(self, net, named_parameters, **kwargs) -> None:
        if self.gradient_clip_value is None:
            return
        torch.nn.utils.clip_grad_norm_(
            [p for group in net.optimizer_.param_groups for p in group["params"]],
            max_norm=self.gradient_clip_value,
            norm_type=self.gradient_clip_norm_type,
            foreach=True,
        )


class DivergenceGuard(Callback):
    """Stop fine-tuning when the training loss or the weights turn NaN or infinite, keeping the last finite weights.

    A copy of the module's weights is kept after every finite epoch
    ([`LastFiniteWeights`][dim_sklearn.training.LastFiniteWeights]); on
    divergence they are restored, a ``RuntimeWarning`` says so, and training
    stops as skorch's ``EarlyStopping`` stops it.

    Attributes
    ----------
    kept_ : LastFiniteWeights
        The weights of the last finite epoch and its number.
    """

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self.kept_ = LastFiniteWeights(net.module_, len(net.history) - 1)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        epoch, loss = net.history[-1, "epoch"], net.history[-1, "train_loss"]
        if not self.kept_.update(epoch, loss, net.module_):
            warn_diverged("fine-tuning", epoch, loss, self.kept_.epoch)
            raise KeyboardInterrupt


def _torch_device(device: str | torch.device | None) -> str | torch.device | None:
    """A ``device`` setting as torch takes it: "auto" resolved (the GPU when there is one, else the CPU)."""
    return str(resolve_device("auto")) if device == "auto" else device


class SiteNetRegressor(NeuralNetRegressor):
    """Site-Net regression on pymatgen Structures, fine-tuned from a Deep InfoMax encoder.

    A skorch ``NeuralNetRegressor`` whose ``X`` is a list (or pandas Series, or
    object array) of Structures and ``y`` a 1-D (or (n, 1)) array. The model is
    the compact Site-Net encoder followed by the head of Moran et al. (2025):
    Linear 64->64, mish, Linear 64->1, all parameters trained (AdamW lr 1e-4,
    amsgrad, eps 1e-7, weight decay 1e-4; MSE; 5% of the labels held out for
    validation, the best-validation weights kept). The encoder starts from a
    [`PretrainedEncoder`][dim_sklearn.PretrainedEncoder] (the shipped one, a
    folder saved by
    [`DeepInfoMaxFeaturizer.save`][dim_sklearn.DeepInfoMaxFeaturizer.save], or
    a fitted featurizer's), or from random weights. Crystals are batched by a
    budget of unique sites (``batch_sites``); skorch's ``batch_size`` is not
    used.

    The pretrained weights are loaded while the module is built, so they are the
    starting point of every ``fit``, also after ``clone``, ``set_params`` and
    inside ``GridSearchCV``; ``clone`` shares the (read-only) encoder or fitted
    featurizer instead of copying it (a cloned featurizer would be unfitted).

    The parameters are checked (type and range) at the start of ``fit``
    and ``initialize``; a bad value raises a ``ValueError`` naming it. A
    training loss that turns NaN or infinite stops fine-tuning with a
    ``RuntimeWarning`` and keeps the last finite weights (callback
    ``divergence_guard``).

    Parameters
    ----------
    encoder : str, PretrainedEncoder, path, DeepInfoMaxFeaturizer or None, default=None
        The starting point: "pretrained" (the default encoder that ships with
        the package) or a shipped encoder's name ("dim-38k"), a
        [`PretrainedEncoder`][dim_sklearn.PretrainedEncoder], a folder holding
        one (written by
        [`DeepInfoMaxFeaturizer.save`][dim_sklearn.DeepInfoMaxFeaturizer.save]),
        or a fitted featurizer (its ``encoder_``); None starts from random
        weights.
    preset : {"compact", "sitenet"}, default="compact"
        "compact": the DIM encoder (about 62k parameters) + head. "sitenet": the
        original, larger supervised Site-Net (about 300k parameters), from
        scratch only (the paper trained it with L1 loss and lr 8.1e-4:
        ``criterion=torch.nn.L1Loss, lr=8.1e-4``).
    max_atoms : int, optional
        Supercell size; default: the pretrained encoder's, else 50.
    oxidation : bool, optional
        Oxidation state as a site feature; default: the encoder's, else False.
    max_sites : int, optional
        Refuse structures whose input cell holds more sites (at most 1,000);
        default: the encoder's, else 256 (see
        [`PointSetConfig`][dim_sklearn.PointSetConfig]).
    min_distance : float, optional
        Refuse structures with atoms closer than this (Angstrom); default: the
        encoder's, else 0.5.
    freeze_encoder : bool, default=False
        Train only the head (skorch ``Freezer`` on ``encoder.*``).
    init : {"encoder", "scratch", "auto"}, default="encoder"
        "encoder": start from ``encoder`` (random weights when it is None).
        "scratch": start from random weights in ``encoder``'s architecture,
        with its point-set settings (the seeds of "encoder"; without an
        encoder, the same as "encoder").
        "auto": fit a clone with each of "encoder" and "scratch" on the same
        validation split (the default ``train_split`` is seeded) and keep the
        one with the lower best validation loss, so pretraining never leaves
        the model worse on held-out labels (twice the fitting time). This net
        then holds the kept clone's fitted state (module, optimizer, history,
        callbacks); ``init_`` and ``init_valid_losses_`` say which and why.
        Needs an encoder and a ``train_split``.
    nonnegative : bool, default=False
        Clamp predictions at zero with an identity gradient (band gaps).
    standardize_target : bool, default=True
        Learn ``(y - mean) / std`` of the training targets and map back; the
        reported losses are then in units of the target's std (squared for MSE).
    batch_sites : int, default=128
        Unique sites per batch.
    patience : int or None, default=30
        EarlyStopping patience on the validation loss (epochs); the weights of
        the best epoch are kept. None: no early stopping, every one of
        ``max_epochs`` epochs is trained and the final weights are kept (with
        ``lr_schedule="cosine"`` and ``train_split=None``: the whole schedule
        on all the labels).
    gradient_clip : float or None, default=1.0
        Gradient norm clipping (skorch's ``GradientNormClipping``, with foreach norms); None disables.
    random_state : int, RandomState or None
        Seeds the initialisation of new layers and the batch order; an int gives
        identical results on CPU.
    cache_dir : str, optional
        On-disk point-set cache.
    compile : bool, default=False
        Run the pair blocks (of the compact encoder or of the original
        Site-Net) compiled with ``torch.compile`` in ``fit`` and ``predict``
        (``dim_sklearn.nn.compiled``): faster on
        long fits (thousands of labels), after about a minute of compiling once
        per process; where compiling is impossible, a warning and eager code.
    composition : {"magpie"} or None, default=None
        "magpie": the head also sees the Magpie descriptors of the composition
        (matminer's ``ElementProperty``, 132 columns), clipped to their range
        over the structures of the fresh ``fit`` and standardised by their
        mean and standard deviation there, missing values at the mean; the
        first layer of the head widens to take them. At a few hundred labels, composition decides much of a
        formation energy. ``X`` is then structures, or a dataset that
        ``get_dataset`` made with the same setting.
    lr_schedule : {"constant", "cosine"}, default="constant"
        "cosine": the learning rate falls from ``lr`` to 0 along half a cosine
        over ``max_epochs`` epochs (torch's ``CosineAnnealingLR``, stepped once
        per epoch, as the callback ``lr_scheduler``), so ``max_epochs`` is the
        training budget; early stopping may still end the fit sooner. With
        ``lr=1e-3`` it reaches in the same epochs a lower validation error than
        the constant ``1e-4`` where the epochs, not early stopping, end the fit
        (docs/fine-tuning.md).
    module : type, default=SiteNetModel
        The module skorch builds from the encoder, the head and the target scaling.
    criterion : type, default=torch.nn.MSELoss
        The loss, computed on standardised targets (see ``standardize_target``).
    optimizer : type, default=torch.optim.AdamW
        With amsgrad, eps 1e-7 and weight decay 1e-4 unless ``optimizer__*``
        arguments say otherwise. An element-wise optimizer
        (``dim_sklearn.training.FLAT_OPTIMIZERS``) gets each parameter group
        (``optimizer__param_groups``) as one flat tensor, the parameters views
        into it while they train: the same update, a few kernels per step.
    lr : float, default=1e-4
        Learning rate.
    max_epochs : int or "auto", default=500
        At most this many epochs (at least 1); early stopping usually ends
        the fit sooner. "auto": a budget of 30,000 structures seen,
        ``ceil(30_000 / n)`` epochs for ``n`` labels (those passed to ``fit``),
        at most 300: 120 epochs at 250 labels, 30 at 1,000. The budget for a
        cosine schedule trained to its end (``patience=None``), as measured in
        the label-masking study.
    train_split : callable or None, default=ValidSplit(0.05, random_state=0)
        skorch's split of the labels into training and validation; None
        trains on all of them and stops early on the training loss.
    callbacks : list or None, default=None
        skorch callbacks, run after the default ones: ``early_stopping`` (unless
        ``patience`` is None), ``gradient_clipping``, ``divergence_guard`` (and
        ``freezer``, ``lr_scheduler``), which
        are tuned as ``callbacks__early_stopping__patience=50`` or removed as
        ``callbacks__early_stopping=None``.
    warm_start : bool, default=False
        As in skorch: ``fit`` goes on from the fitted state instead of
        starting afresh.
    verbose : int, default=0
        1 prints skorch's table of epochs.
    device : str, torch.device or None, default="auto"
        Where the model runs: "auto" takes the GPU when there is one, else the
        CPU; "cpu", "cuda" or any torch device as given; None leaves the
        placement to the caller, as in skorch. Kept as given by
        ``get_params``, ``clone`` and pickling; ``device_`` is the device in
        use.
    **kwargs
        Any other skorch argument, e.g. ``optimizer__weight_decay``.

    Attributes
    ----------
    module_ : SiteNetModel
        The model: encoder, head and target scaling.
    device_ : str, torch.device or None
        The device the model is on: ``device``, "auto" resolved (after
        unpickling, on the machine that unpickled it).
    point_set_config_ : PointSetConfig
        How structures become point sets (from the parameters, else the encoder).
    target_mean_ : float
        Mean of the targets of the last fresh ``fit`` (0 without standardisation).
    target_scale_ : float
        Their standard deviation (1 without standardisation or for constant targets).
    descriptor_stats_ : ndarray of shape (4, n_descriptors) or None
        With ``composition``: the mean, the standard deviation (1 where
        constant or never known), the minimum and the maximum of each
        descriptor over the structures of the last fresh ``fit``; None without.
    init_ : str
        With ``init="auto"``: the start that was kept, "encoder" or "scratch"
        (the ``init`` of the fitted clone whose state this net holds).
    init_valid_losses_ : dict of str to float
        With ``init="auto"``: the best validation loss of each start.
    epochs_ : int
        The epochs ``fit`` trains at most: ``max_epochs``, or the number
        ``"auto"`` chose for the labels.

    Examples
    --------
    >>> feat = DeepInfoMaxFeaturizer(random_state=0).fit(unlabelled)          # doctest: +SKIP
    >>> reg = SiteNetRegressor(encoder=feat, random_state=0).fit(structures, y) # doctest: +SKIP
    >>> reg.predict(test_structures).shape                                      # doctest: +SKIP
    (n_test,)
    """

    device: str | torch.device | None
    device_: str | torch.device | None

    _PARAM_RULES: ClassVar[dict[str, Rule]] = {
        "encoder": optional(either(instance_of(_ENCODER_WORDS, str, os.PathLike, PretrainedEncoder), _FEATURIZER)),
        "preset": one_of(*PRESETS),
        **{name: optional(rule) for name, rule in PointSetConfig.FIELD_RULES.items()},
        "freeze_encoder": boolean,
        "init": one_of(*INITS),
        "nonnegative": boolean,
        "standardize_target": boolean,
        "batch_sites": integer(1),
        "patience": optional(integer(1)),
        "gradient_clip": optional(real(0, low_open=True)),
        "random_state": seed,
        "cache_dir": optional(instance_of("a folder", str, os.PathLike)),
        "lr": real(0, low_open=True),
        "max_epochs": either(integer(1), one_of("auto")),
        "compile": boolean,
        "composition": optional(one_of(*COMPOSITION_DESCRIPTORS)),
        "lr_schedule": one_of(*LR_SCHEDULES),
    }
    """What each parameter must be: the point-set parameters by ``PointSetConfig``'s rules (None: the encoder's)."""

    def __init__(
        self,
        encoder: PretrainedEncoder | str | os.PathLike | Any | None = None,
        preset: str = "compact",
        max_atoms: int | None = None,
        oxidation: bool | None = None,
        freeze_encoder: bool = False,
        init: str = "encoder",
        nonnegative: bool = False,
        standardize_target: bool = True,
        batch_sites: int = 128,
        patience: int | None = 30,
        gradient_clip: float | None = 1.0,
        random_state: int | np.random.RandomState | None = None,
        cache_dir: str | None = None,
        max_sites: int | None = None,
        min_distance: float | None = None,
        compile: bool = False,
        composition: str | None = None,
        lr_schedule: str = "constant",
        *,
        module: type[nn.Module] = SiteNetModel,
        criterion: type[nn.Module] = nn.MSELoss,
        optimizer: type[torch.optim.Optimizer] = torch.optim.AdamW,
        lr: float = 1e-4,
        max_epochs: int | str = 500,
        train_split: Any = VALIDATION_SPLIT,
        verbose: int = 0,
        device: str | torch.device | None = "auto",
        **kwargs: Any,
    ):
        # foreach: one multi-tensor kernel per update step for optimizers that get the parameters one by one
        # (AdamW gets each group as one flat tensor: initialize_optimizer)
        defaults = {"optimizer__amsgrad": True, "optimizer__eps": 1e-7, "optimizer__weight_decay": 1e-4}
        for name, value in {**defaults, "optimizer__foreach": True}.items():
            kwargs.setdefault(name, value)
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            train_split=train_split,
            verbose=verbose,
            device=device,
            **kwargs,
        )
        self.encoder = encoder
        self.preset = preset
        self.max_atoms = max_atoms
        self.oxidation = oxidation
        self.freeze_encoder = freeze_encoder
        self.init = init
        self.nonnegative = nonnegative
        self.standardize_target = standardize_target
        self.batch_sites = batch_sites
        self.patience = patience
        self.gradient_clip = gradient_clip
        self.random_state = random_state
        self.cache_dir = cache_dir
        self.max_sites = max_sites
        self.min_distance = min_distance
        self.compile = compile
        self.composition = composition
        self.lr_schedule = lr_schedule

    # ------------------------------------------------------------------ scikit-learn plumbing

    def __sklearn_clone__(self) -> SiteNetRegressor:
        """Clone the parameters, but share the encoder (or fitted featurizer) instead of copying it."""
        params = self.get_params(deep=False)
        return type(self)(**{k: v if k == "encoder" else clone(v, safe=False) for k, v in params.items()})

    # ------------------------------------------------------------------ device
    # skorch (1.4) hands ``device`` to torch as it is, which takes no "auto": where it places the module and
    # criterion, maps loaded weights, and in callbacks during training. While skorch does these, ``device`` holds
    # the device it names; otherwise it is the parameter as given, and ``device_`` the device in use.

    @contextlib.contextmanager
    def _device_resolved(self) -> Iterator[None]:
        """Within, ``device`` and ``device_`` hold the device ``device`` names; after, ``device`` is as given.

        ``device_`` keeps the device skorch used, after its own fallback (to
        the CPU when weights saved on a GPU are loaded without one).
        """
        given: str | torch.device | None = self.device
        self.device = self.device_ = _torch_device(given)
        try:
            yield
        finally:
            self.device_, self.device = self.device, given

    def _initialize_module(self, reason: str | None = None) -> SiteNetRegressor:
        with self._device_resolved():
            return super()._initialize_module(reason=reason)

    def _initialize_criterion(self, reason: str | None = None) -> SiteNetRegressor:
        with self._device_resolved():
            return super()._initialize_criterion(reason=reason)

    def load_params(self, *args: Any, **kwargs: Any) -> None:
        """skorch's ``load_params``, mapping the weights to the device ``device`` names."""
        with self._device_resolved():
            super().load_params(*args, **kwargs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """skorch's unpickling, mapping the weights to the device ``device`` names on this machine."""
        super().__setstate__({**state, "device": _torch_device(state["device"])})
        self.device_, self.device = self.device, state["device"]

    # ------------------------------------------------------------------ model

    def torch_compile(self, module: torch.nn.Module, name: str) -> torch.nn.Module:
        """The module as it is: ``compile`` compiles the pair blocks inside it, not the whole module as skorch would.

        skorch's own ``compile=True`` wraps each module in ``torch.compile``, whose
        weights then save under other names; this estimator's ``compile`` option
        means the compiled pair blocks of ``dim_sklearn.nn.compiled``.
        """
        return module

    def _pretrained(self) -> PretrainedEncoder | None:
        """The starting encoder that ``encoder`` names; a folder is read here."""
        return resolve_encoder(self.encoder)

    def _point_set_config(self, pretrained: PretrainedEncoder | None) -> PointSetConfig:
        """How structures become point sets: explicit parameters, else the pretrained encoder's."""
        base = pretrained.point_set_config if pretrained is not None else PointSetConfig()
        if pretrained is not None and self.oxidation is not None and self.oxidation != base.oxidation:
            raise ValueError(
                f"oxidation={self.oxidation} does not match the pretrained encoder (oxidation={base.oxidation})"
            )
        explicit: dict[str, Any] = {
            "max_atoms": self.max_atoms,
            "max_sites": self.max_sites,
            "oxidation": self.oxidation,
            "min_distance": self.min_distance,
        }
        return dataclasses.replace(base, **{name: value for name, value in explicit.items() if value is not None})

    def _check_parameters(self) -> None:
        """The rules of ``_PARAM_RULES``, one ``ValueError`` naming every parameter that breaks its rule (skorch's own
        ``_validate_params`` checks argument names)."""
        check_fields(self, **self._PARAM_RULES)

    def __sklearn_tags__(self) -> Tags:
        """A regressor of a 1-D sequence of structures (not a 2-D numeric array)."""
        tags = super().__sklearn_tags__()
        tags.input_tags = InputTags(one_d_array=True, two_d_array=False)
        return tags

    def initialize(self) -> SiteNetRegressor:
        """Check the parameters, then build the model, criterion, optimizer and callbacks (skorch)."""
        self._check_parameters()
        return super().initialize()

    def initialize_module(self) -> SiteNetRegressor:
        """Build the model, loading the pretrained encoder weights as part of its construction."""
        pretrained = self._pretrained()  # a saved folder is read here, once per initialisation
        self.point_set_config_ = self._point_set_config(pretrained)
        n_site_features = self.point_set_config_.n_site_features
        init_seed, self.shuffle_seed_ = spawn_seeds(self.random_state, 2)
        descriptor_stats = self._descriptor_stats()
        n_descriptors = 0 if descriptor_stats is None else descriptor_stats.shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            if self.preset == "sitenet":
                if pretrained is not None:
                    raise ValueError("preset='sitenet' trains the original Site-Net from scratch: use encoder=None")
                sitenet = SiteNet(SiteNetConfig(n_site_features=n_site_features))
                encoder: nn.Module = sitenet
                head: nn.Module = nn.Linear(sitenet.config.output_dim + n_descriptors, 1)
            else:
                if pretrained is not None and self.init == "scratch":
                    encoder = SiteNetEncoder(pretrained.config)
                elif pretrained is not None:
                    encoder = copy.deepcopy(pretrained.module).cpu()
                else:
                    encoder = SiteNetEncoder(EncoderConfig(n_site_features=n_site_features))
                width = encoder.config.global_dim
                head = nn.Sequential(nn.Linear(width + n_descriptors, width), Mish(), nn.Linear(width, 1))
            self.module_ = self.module(
                encoder,
                head,
                target_mean=getattr(self, "target_mean_", 0.0),
                target_scale=getattr(self, "target_scale_", 1.0),
                nonnegative=self.nonnegative,
                **({} if descriptor_stats is None else {"descriptor_stats": descriptor_stats}),
                **self.get_params_for("module"),
            )
        set_compiled(self.module_, resolve_compile(self.compile, 0, self.device_ or "cpu"))
        return self

    def initialize_optimizer(self, triggered_directly: Any = None) -> SiteNetRegressor:
        """skorch's optimizer; an element-wise one (AdamW, the default) gets each parameter group as one flat tensor.

        The update is the same, element for element, at a few kernels per step
        instead of a few per parameter tensor (``dim_sklearn.training.flat_groups``);
        the parameters are views into the flat tensors while ``fit`` and
        ``partial_fit`` train. Other optimizers, and runs that freeze parameters
        (``freeze_encoder``, skorch's ``Freezer``), get the parameters as skorch gives them.
        """
        named = list(self.get_all_learnable_params())
        (groups,), kwargs = self.get_params_for_optimizer("optimizer", named)
        frozen = any(isinstance(callback, ParamMapper) for _, callback in self.callbacks_)
        if self.optimizer in FLAT_OPTIMIZERS and not frozen:
            groups = flat_groups(groups, named)
        self.optimizer_ = self.optimizer(groups, **kwargs)
        return self

    def _flat_optimizer(self) -> bool:
        return any(FLAT_NAMES in group for group in self.optimizer_.param_groups)

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Make the parameters views into the optimizer's flat groups for the run."""
        super().on_train_begin(net, X=X, y=y, **kwargs)
        link_flat_groups(self.optimizer_, dict(self.module_.named_parameters()))

    def on_train_end(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        """Give the parameters storage of their own again (a module of views pickles badly)."""
        super().on_train_end(net, X=X, y=y, **kwargs)
        unlink_flat_groups(self.optimizer_, dict(self.module_.named_parameters()))

    def _zero_grad_optimizer(self, set_to_none: bool | None = None) -> None:
        """Zero the gradients; in place for flat groups, whose gradient the parameters' gradients are views into."""
        super()._zero_grad_optimizer(set_to_none=False if self._flat_optimizer() else set_to_none)

    def _descriptor_stats(self) -> np.ndarray | None:
        """The model's ``descriptor_stats``: those of the last fresh fit; before one, mean 0, scale 1, no clipping."""
        if self.composition is None:
            return None
        stats = getattr(self, "descriptor_stats_", None)
        if stats is None:
            width = COMPOSITION_DESCRIPTORS[self.composition][1]
            stats = np.array([[0.0] * width, [1.0] * width, [-np.inf] * width, [np.inf] * width])
        return stats

    def get_default_callbacks(self) -> list[tuple[str, Any]]:
        callbacks = list(super().get_default_callbacks())
        if self.freeze_encoder:
            callbacks.append(("freezer", Freezer("encoder.*")))
        if self.gradient_clip is not None:
            callbacks.append(("gradient_clipping", ForeachGradientNormClipping(self.gradient_clip)))
        callbacks.append(("divergence_guard", DivergenceGuard()))
        if self.lr_schedule == "cosine":
            epochs = getattr(self, "epochs_", None) or self._epoch_budget(None)  # set by fit and partial_fit
            callbacks.append(("lr_scheduler", LRScheduler(CosineAnnealingLR, T_max=epochs)))
        if self.patience is not None:
            monitor = "valid_loss" if self.train_split is not None else "train_loss"
            early_stopping = EarlyStopping(monitor=monitor, patience=self.patience, load_best=True)
            callbacks.append(("early_stopping", early_stopping))
        return callbacks

    # ------------------------------------------------------------------ data

    def get_dataset(self, X: Any, y: Any = None) -> Dataset:
        """A ``CrystalDataset`` of the structures ``X`` (a Dataset passes through)."""
        if isinstance(X, Dataset):
            return X
        self.check_is_fitted(["point_set_config_"])  # set when the module is built
        cache = PointSetCache(self.cache_dir) if self.cache_dir else None
        point_sets = build_point_sets(X, self.point_set_config_, cache=cache)  # raises rather than give None
        descriptors = None if self.composition is None else COMPOSITION_DESCRIPTORS[self.composition][0](X)
        return CrystalDataset(cast("list[PointSet]", point_sets), _as_targets(y), descriptors)

    def get_iterator(self, dataset: Dataset, training: bool = False) -> DataLoader:
        """Batches by a budget of unique sites: shuffled per epoch in training, in order otherwise."""
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = {k: v for k, v in self.get_params_for(prefix).items() if k not in ("batch_size", "shuffle")}
        sizes = site_counts(dataset)
        budget = max(self.batch_sites, int(sizes.max(initial=1)))
        if training:
            sampler = SiteBudgetBatchSampler(sizes, budget, shuffle=True, random_state=self.shuffle_seed_)
            sampler.set_epoch(len(self.history))
        else:
            sampler = SiteBudgetBatchSampler(sizes, budget, shuffle=False)
        iterator = self.iterator_train if training else self.iterator_valid
        return iterator(dataset, batch_sampler=sampler, collate_fn=collate_labelled, **kwargs)

    def infer(self, x: PointSetBatch | tuple[PointSetBatch, torch.Tensor], **fit_params: Any) -> torch.Tensor:
        parts: tuple[Any, ...] = x if isinstance(x, tuple) else (x,)
        if self.device_ is not None:
            parts = tuple(part.to(self.device_) for part in parts)
        return self.module_(*parts, **fit_params)

    def get_loss(self, y_pred: torch.Tensor, y_true: torch.Tensor, X: Any = None, training: bool = False):
        """The criterion on standardised values (``target_scale`` divides both sides)."""
        y_true = y_true.to(y_pred.device).view_as(y_pred)
        scale = self.module_.target_scale
        return self.criterion_(y_pred / scale, y_true / scale)

    # ------------------------------------------------------------------ fit / predict

    def _set_target_scaling(self, y: np.ndarray | None) -> None:
        """Mean and standard deviation of the targets, computed in float64 (float32 squares overflow at 1e19)."""
        if y is None or not self.standardize_target:
            self.target_mean_, self.target_scale_ = 0.0, 1.0
            return
        std = float(y.std())
        self.target_mean_ = float(y.mean())
        self.target_scale_ = std if std > 0 else 1.0

    def _set_descriptor_stats(self, X: Any) -> None:
        """Mean, standard deviation and range of each descriptor over the structures (or dataset) ``X``, with
        ``composition``.

        Raises
        ------
        ValueError
            ``X`` is a dataset without descriptors.
        """
        self.descriptor_stats_ = None
        if self.composition is None:
            return
        if isinstance(X, Dataset):
            descriptors = dataset_descriptors(X)
            if descriptors is None:
                raise ValueError(
                    f"composition={self.composition!r} needs the descriptors of X: pass structures, or a dataset made "
                    "by get_dataset with the same composition"
                )
        else:
            descriptors = COMPOSITION_DESCRIPTORS[self.composition][0](X)
        known = np.isfinite(descriptors)
        counts = known.sum(axis=0)
        filled = np.where(known, descriptors, 0.0)
        mean = filled.sum(axis=0) / np.maximum(counts, 1)
        std = np.sqrt(np.where(known, (filled - mean) ** 2, 0.0).sum(axis=0) / np.maximum(counts, 1))
        low = np.where(known, descriptors, np.inf).min(axis=0, initial=np.inf)
        high = np.where(known, descriptors, -np.inf).max(axis=0, initial=-np.inf)
        never = counts == 0  # a column no structure has a value for: left unclipped, and NaN becomes the mean 0
        self.descriptor_stats_ = np.stack(
            [mean, np.where(std > 0, std, 1.0), np.where(never, -np.inf, low), np.where(never, np.inf, high)]
        )

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> SiteNetRegressor:
        """Fine-tune on structures ``X`` and targets ``y`` (shape (n,) or (n, 1), one per structure).

        Raises
        ------
        ValueError
            A parameter out of range, no structures, no targets (``y`` None),
            as many targets as structures, or targets that are not finite;
            one structure with a ``train_split``.
        StructureError
            For the first structure that cannot be featurised, naming its position.
        """
        self._check_parameters()
        y = _training_targets(X, y, "SiteNetRegressor.fit")
        if self.train_split is not None and _n_structures(X) < 2:
            raise ValueError(
                "X holds 1 structure: SiteNetRegressor.fit holds labels out for validation (train_split) and needs "
                "at least 2; pass train_split=None to fit on one"
            )
        if self.warm_start and self.initialized_:
            return super().fit(X, y, **fit_params)
        self.epochs_ = self._epoch_budget(_n_structures(X))
        if self.init == "auto":
            return self._fit_best_start(X, y, **fit_params)
        self._set_target_scaling(y)
        self._set_descriptor_stats(X)
        return super().fit(X, y, **fit_params)

    def _epoch_budget(self, n_labels: int | None) -> int:
        """``max_epochs``, or the epochs ``"auto"`` gives ``n_labels`` labels (unknown: ``AUTO_MAX_EPOCHS``)."""
        if self.max_epochs != "auto":
            return int(self.max_epochs)
        if not n_labels:
            return AUTO_MAX_EPOCHS
        return min(AUTO_MAX_EPOCHS, math.ceil(AUTO_EPOCH_SAMPLES / n_labels))

    def fit_loop(self, X: Any, y: Any = None, epochs: int | None = None, **fit_params: Any) -> SiteNetRegressor:
        """skorch's training loop, for ``epochs`` or else the fit's budget ``epochs_`` (``max_epochs`` resolved)."""
        if epochs is None:
            epochs = getattr(self, "epochs_", None) or self._epoch_budget(_n_structures(X))
        return super().fit_loop(X, y, epochs=epochs, **fit_params)

    def _fit_best_start(self, X: Any, y: np.ndarray | None, **fit_params: Any) -> SiteNetRegressor:
        """``init="auto"``: fit a clone from each of ``STARTS``; take over the one with the lower validation loss.

        Raises
        ------
        ValueError
            ``encoder`` or ``train_split`` is None.
        """
        if self.encoder is None or self.train_split is None:
            raise ValueError(
                "init='auto' compares the encoder with random weights on the validation loss: "
                "it needs an encoder and a train_split"
            )
        fits = {start: clone(self).set_params(init=start).fit(X, y, **fit_params) for start in STARTS}
        losses = {start: float(min(net.history[:, "valid_loss"])) for start, net in fits.items()}
        kept = min(losses, key=losses.__getitem__)
        self._take_fitted_state(fits[kept])
        self.init_, self.init_valid_losses_ = kept, losses
        return self

    def _take_fitted_state(self, net: SiteNetRegressor) -> None:
        """Hold ``net``'s fitted state (every attribute but the parameters), keeping this net's parameters."""
        parameters = {name: self.__dict__[name] for name in self._get_param_names()}
        self.__dict__.update(net.__dict__)
        self.__dict__.update(parameters)

    def partial_fit(self, X: Any, y: Any = None, classes: Any = None, **fit_params: Any) -> SiteNetRegressor:
        """One more epoch on ``X`` and ``y`` (checked as ``fit`` checks them), initialising first if needed.

        One pass over the data per call, as scikit-learn's ``partial_fit``
        (skorch's trains ``max_epochs`` epochs); ``epochs=k`` asks for ``k``.
        ``fit`` trains up to ``max_epochs`` through skorch's own call.
        """
        from_fit = fit_params.get("_routing_method") == "fit"  # skorch's fit calls partial_fit with this marker
        if not from_fit:
            y = _training_targets(X, y, "SiteNetRegressor.partial_fit")
            fit_params.setdefault("epochs", 1)
        if not self.initialized_:
            self.epochs_ = self._epoch_budget(_n_structures(X))
            self._set_target_scaling(y)
            self._set_descriptor_stats(X)
        with self._device_resolved():  # callbacks read it: EpochScoring maps its cached predictions to it
            try:
                return super().partial_fit(X, y, classes, **fit_params)
            except BaseException:  # skorch skips on_train_end on an error: the parameters must not stay views
                if hasattr(self, "optimizer_"):
                    unlink_flat_groups(self.optimizer_, dict(self.module_.named_parameters()))
                raise

    def predict(self, X: Any) -> np.ndarray:
        """Predictions for structures ``X``: float32 array of shape (n,); no structures give an empty array.

        Raises
        ------
        NotInitializedError
            The model is not fitted.
        StructureError
            For the first structure that cannot be featurised, naming its position.

        Warns
        -----
        RuntimeWarning
            When a prediction is NaN or infinite (naming the first such structure).
        """
        self.check_is_fitted()
        if _n_structures(X) == 0:
            return np.empty(0, dtype=np.float32)
        outputs = [to_numpy(batch) for batch in self.forward_iter(X, training=False)]
        prediction = np.concatenate(outputs).reshape(-1)
        bad = np.flatnonzero(~np.isfinite(prediction))
        if bad.size:
            warnings.warn(
                f"{bad.size} of {prediction.size} predictions are NaN or infinite (first: structure {bad[0]}): the "
                "model's weights or target scale are not finite",
                RuntimeWarning,
                stacklevel=2,
            )
        return prediction

    @property
    def predict_proba(self) -> Any:
        """Not offered: a regressor has no class probabilities (skorch's ``NeuralNet`` defines it)."""
        raise AttributeError("SiteNetRegressor is a regressor: it has no predict_proba; use predict")
