"""SiteNetEnsemble: Site-Nets fine-tuned on the folds of the labels, averaged and blended with a composition forest.

With a few hundred labels, one fine-tuned network is at the mercy of its
validation split (5% of 100 labels is 5 structures) and of its seed. The
ensemble uses every label for both: the labels are cut into ``n_folds`` folds,
and one network is fine-tuned per fold, stopping early on that fold and
training on the others. Its prediction is the networks' mean, blended with a
random forest on Magpie composition descriptors in the proportion that fits the
labels best out of fold (each network on its own fold, the forest out of bag),
drawn toward an equal blend when the labels are few.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import KFold, PredefinedSplit
from sklearn.utils import InputTags, Tags
from sklearn.utils.validation import check_is_fitted
from skorch.dataset import ValidSplit
from torch.utils.data import Subset

from ._utils import Rule, check_fields, instance_of, integer, one_of, optional, real, seed, spawn_seeds
from .composition import magpie_features
from .pointsets import as_structure_list
from .regressor import SiteNetRegressor, _training_targets

__all__ = ["BLEND_GRID", "RESAMPLING", "SiteNetEnsemble"]

RESAMPLING = ("folds", "none")
"""How ``SiteNetEnsemble`` gives its networks the labels: the folds (train on the others, stop on its own), or
all of them to every network (a seed ensemble)."""

BLEND_GRID = np.linspace(0.0, 1.0, 21)
"""The networks' shares of the blend that ``SiteNetEnsemble`` tries (steps of 0.05)."""


class SiteNetEnsemble(RegressorMixin, BaseEstimator):
    """Site-Nets fine-tuned on the folds of the labels, averaged, and blended with a random forest on composition.

    ``fit`` cuts the labels into ``n_folds`` shuffled folds and fine-tunes one
    clone of ``regressor`` per fold: it trains on the other folds and stops
    early on its own (so every label serves for training and for early
    stopping, and each network has a different seed). The networks' mean is
    blended with a random forest on Magpie descriptors (``composition``). The
    networks' share that fits best, ``best_weight_``, is the one of
    ``BLEND_GRID`` whose blend of the out-of-fold predictions (each network on
    its own fold, the forest out of bag) has the lowest mean absolute error on
    the labels; with many labels it is usually near 1, with few, composition
    often decides. With few labels that choice is noisy, and it favours the
    networks, whose out-of-fold predictions come from the fold each one
    stopped on. The share used, ``weight_``, is therefore drawn toward an
    equal blend as if ``blend_prior`` labels had favoured it:
    ``0.5 + (best_weight_ - 0.5) * n / (n + blend_prior)`` for ``n`` labels
    (a third of the way from 0.5 at 50 labels with the default 100; 91% of
    the way at 1,000).

    With ``resampling="none"`` it is a seed ensemble instead: every network
    fine-tunes on all the labels, with its own seed. That suits networks
    without early stopping (``SiteNetRegressor(lr_schedule="cosine",
    patience=None, train_split=None)``: the whole schedule on every label),
    which folds would only deprive of a fifth of the labels; there are no
    out-of-fold predictions then, so no blend with the forest
    (``composition=None``).

    Point sets are built once per ``fit`` and ``predict`` and shared by the
    networks. Fitting costs ``n_folds`` fine-tunings.

    Parameters
    ----------
    regressor : SiteNetRegressor or None, default=None
        The network every fold fine-tunes (cloned; its ``train_split`` and
        ``random_state`` are set per fold, everything else is kept: start,
        epochs, patience, ``init="auto"``, ...). None:
        ``SiteNetRegressor(encoder="pretrained")``, the shipped encoder.
    n_folds : int, default=5
        Folds, and networks (at least 2; at most the number of labels).
    resampling : {"folds", "none"}, default="folds"
        "folds": each network trains on the other folds and validates on its
        own (the regressor's ``train_split`` is replaced); "none": each
        network fine-tunes on every label as ``regressor`` is set up (its
        ``train_split`` kept), only the seed differs; needs
        ``composition=None``.
    composition : {"magpie"} or None, default="magpie"
        Blend with a random forest on Magpie descriptors; None: the networks'
        mean alone (``weight_`` 1).
    n_estimators : int, default=100
        Trees of the forest.
    blend_prior : float, default=100
        How many labels' worth of belief in an equal blend the share starts
        from; 0 takes the out-of-fold choice as it is.
    random_state : int, RandomState or None, default=None
        Seeds the folds, the networks and the forest; an int gives identical
        results on CPU.
    n_jobs : int or None, default=None
        Processes of the forest (scikit-learn's ``n_jobs``).

    Attributes
    ----------
    estimators_ : list of SiteNetRegressor
        The fitted networks, one per fold.
    forest_ : RandomForestRegressor or None
        The fitted forest on Magpie descriptors (None without ``composition``).
    weight_ : float
        The networks' share of the prediction; the forest has ``1 - weight_``.
    best_weight_ : float
        The share whose blend fits the out-of-fold predictions best (before
        ``blend_prior``).
    oof_prediction_ : ndarray of shape (n,) or None
        Each label's prediction by the network that stopped on its fold (None
        with ``resampling="none"``).
    oof_mae_ : dict of str to float
        Out-of-fold mean absolute error of the networks, the forest (out of
        bag) and the blend (empty with ``resampling="none"``).
    composition_means_ : ndarray of shape (132,)
        Training means of the descriptors, which replace missing values.

    Examples
    --------
    >>> model = SiteNetEnsemble(random_state=0).fit(structures, y)  # doctest: +SKIP
    >>> model.weight_, model.predict(test_structures).shape           # doctest: +SKIP
    (0.6, (n_test,))
    """

    _PARAM_RULES: ClassVar[dict[str, Rule]] = {
        "regressor": optional(instance_of("a SiteNetRegressor", SiteNetRegressor)),
        "n_folds": integer(2),
        "resampling": one_of(*RESAMPLING),
        "composition": optional(one_of("magpie")),
        "n_estimators": integer(1),
        "blend_prior": real(0),
        "random_state": seed,
        "n_jobs": optional(integer(-(2**31))),
    }

    def __init__(
        self,
        regressor: SiteNetRegressor | None = None,
        n_folds: int = 5,
        resampling: str = "folds",
        composition: str | None = "magpie",
        n_estimators: int = 100,
        blend_prior: float = 100,
        random_state: int | np.random.RandomState | None = None,
        n_jobs: int | None = None,
    ):
        self.regressor = regressor
        self.n_folds = n_folds
        self.resampling = resampling
        self.composition = composition
        self.n_estimators = n_estimators
        self.blend_prior = blend_prior
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self) -> Tags:
        """A regressor of a 1-D sequence of structures (not a 2-D numeric array)."""
        tags = super().__sklearn_tags__()
        tags.input_tags = InputTags(one_d_array=True, two_d_array=False)
        return tags

    def fit(self, X: Any, y: Any) -> SiteNetEnsemble:
        """Fine-tune one network per fold of ``(X, y)`` (or per seed) and, with ``composition``, the forest and
        the blend.

        Raises
        ------
        ValueError
            A parameter out of range, ``resampling="none"`` with
            ``composition``, fewer structures than ``n_folds``, or targets that
            do not match ``X``.
        StructureError
            For the first structure that cannot be featurised, naming its position.
        """
        check_fields(self, **self._PARAM_RULES)
        if self.resampling == "none" and self.composition is not None:
            raise ValueError(
                'resampling="none" leaves no out-of-fold predictions to weigh the forest by: set composition=None'
            )
        structures = as_structure_list(X)
        targets = _training_targets(structures, y, "SiteNetEnsemble.fit")
        assert targets is not None  # a list of structures with y None is refused above
        if len(structures) < self.n_folds:
            raise ValueError(
                f"X holds {len(structures)} structures: SiteNetEnsemble with n_folds={self.n_folds} needs at least "
                f"{self.n_folds}"
            )
        y_flat = targets.ravel()
        fold_seed, forest_seed, *member_seeds = spawn_seeds(self.random_state, self.n_folds + 2)
        template = self._template()
        dataset = clone(template).initialize().get_dataset(structures, targets)
        if self.resampling == "none":
            self.estimators_ = [
                clone(template).set_params(random_state=member_seed).fit(dataset, targets)
                for member_seed in member_seeds
            ]
            self.oof_prediction_, self.oof_mae_ = None, {}
            self.forest_, self.best_weight_, self.weight_ = None, 1.0, 1.0
            return self
        self.estimators_, oof = [], np.empty(len(structures))
        folds = KFold(self.n_folds, shuffle=True, random_state=fold_seed).split(np.arange(len(structures)))
        for member_seed, (_, valid) in zip(member_seeds, folds):
            test_fold = np.full(len(structures), -1)
            test_fold[valid] = 0
            split = ValidSplit(PredefinedSplit(test_fold))
            net = clone(template).set_params(train_split=split, random_state=member_seed)
            net.fit(dataset, targets)
            oof[valid] = net.predict(Subset(dataset, valid.tolist()))
            self.estimators_.append(net)
        self.oof_prediction_, self.oof_mae_ = oof, {"networks": float(np.abs(oof - y_flat).mean())}
        self.forest_, self.best_weight_, self.weight_ = None, 1.0, 1.0
        if self.composition is not None:
            self.forest_ = self._fit_forest(structures, y_flat, oof, forest_seed)
        return self

    def _template(self) -> SiteNetRegressor:
        """The network each fold clones: ``regressor``, or one fine-tuned from the shipped encoder."""
        return self.regressor if self.regressor is not None else SiteNetRegressor(encoder="pretrained")

    def _fit_forest(self, structures: list, y: np.ndarray, oof: np.ndarray, forest_seed: int) -> RandomForestRegressor:
        """The forest on Magpie descriptors; sets the shares ``best_weight_`` and ``weight_`` (blends with the
        networks' out-of-fold predictions ``oof``).

        ``oof_mae_`` gains the out-of-bag error of the forest and the
        out-of-fold errors of the blends at the best share ("best blend") and
        at the share used ("blend").
        """
        descriptors = magpie_features(structures)
        with warnings.catch_warnings():  # a column no training structure has a value for: 0 below
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            self.composition_means_ = np.nan_to_num(np.nanmean(descriptors, axis=0))
        forest = RandomForestRegressor(self.n_estimators, oob_score=True, random_state=forest_seed, n_jobs=self.n_jobs)
        with warnings.catch_warnings():  # a label in every tree's bootstrap has no out-of-bag value: left out below
            warnings.filterwarnings("ignore", "Some inputs do not have OOB scores", UserWarning)
            forest.fit(self._imputed(descriptors), y)
        out_of_bag = forest.oob_prediction_.ravel()
        seen = np.isfinite(out_of_bag)
        errors = [np.abs(w * oof[seen] + (1 - w) * out_of_bag[seen] - y[seen]).mean() for w in BLEND_GRID]
        self.best_weight_ = float(BLEND_GRID[int(np.argmin(errors))])
        self.weight_ = 0.5 + (self.best_weight_ - 0.5) * len(y) / (len(y) + self.blend_prior)
        blend = np.abs(self.weight_ * oof[seen] + (1 - self.weight_) * out_of_bag[seen] - y[seen])
        self.oof_mae_.update(forest=float(errors[0]), best_blend=float(min(errors)), blend=float(blend.mean()))
        return forest

    def _imputed(self, descriptors: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(descriptors), self.composition_means_, descriptors)

    def transform(self, X: Any) -> np.ndarray:
        """Each network's prediction for structures ``X`` and, with ``composition``, the forest's.

        As scikit-learn's ``VotingRegressor.transform``: the parts that
        ``predict`` blends, one column each.

        Returns
        -------
        ndarray of shape (n, n_folds) or (n, n_folds + 1)
            The networks in the order of ``estimators_``, then the forest.

        Raises
        ------
        NotFittedError
            The ensemble is not fitted.
        StructureError
            For the first structure that cannot be featurised, naming its position.
        """
        check_is_fitted(self, "estimators_")
        structures = as_structure_list(X)
        width = len(self.estimators_) + (self.forest_ is not None)
        if not structures:
            return np.empty((0, width))
        dataset = self.estimators_[0].get_dataset(structures)
        columns = [net.predict(dataset).astype(np.float64) for net in self.estimators_]
        if self.forest_ is not None:
            columns.append(self.forest_.predict(self._imputed(magpie_features(structures))))
        return np.column_stack(columns)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions for structures ``X``: the networks' mean, blended with the forest; shape (n,).

        Raises as ``transform`` does.
        """
        return self.blend(self.transform(X))

    def blend(self, columns: np.ndarray) -> np.ndarray:
        """The prediction from the columns of ``transform``: ``weight_`` times the networks' mean, plus
        ``1 - weight_`` times the forest's."""
        check_is_fitted(self, "estimators_")
        networks = columns[:, : len(self.estimators_)].mean(axis=1)
        if self.forest_ is None:
            return networks
        return np.asarray(self.weight_ * networks + (1 - self.weight_) * columns[:, -1])
