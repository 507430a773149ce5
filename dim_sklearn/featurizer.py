"""DeepInfoMaxFeaturizer: a scikit-learn transformer and matminer featurizer in one class."""

from __future__ import annotations

import copy
import os
import re
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from matminer.featurizers.base import BaseFeaturizer
from sklearn.utils import InputTags, Tags, TransformerTags
from sklearn.utils.validation import check_is_fitted

from ._utils import (
    Rule,
    boolean,
    check_fields,
    either,
    instance_of,
    integer,
    one_of,
    optional,
    resolve_device,
    spawn_seeds,
)
from .encoder import DEFAULT_PRETRAINED, PRETRAINING_SETTINGS, PretrainedEncoder, pretrained_path, resolve_encoder
from .exceptions import IncompatibleModelError, StructureError
from .nn import DeepInfoMax, EncoderConfig, ObjectiveSettings, SiteNetEncoder
from .nn.compiled import CompileOption, resolve_compile, set_compiled
from .pointsets import (
    PointSet,
    PointSetCache,
    PointSetConfig,
    SiteBudgetBatchSampler,
    as_structure_list,
    build_point_sets,
    collate_point_sets,
    stream_point_sets,
)
from .pretrain import PretrainCallback, PretrainSettings, pretrain

__all__ = ["DeepInfoMaxFeaturizer", "embed_point_sets"]

_RUNTIME_PARAMS = frozenset({"device", "cache_dir", "ignore_errors", "verbose", "n_jobs", "compile"})
_INPUT_LIMITS = frozenset({"max_sites", "min_distance"})
"""Point-set checks that refuse structures but never change a vector: ``DeepInfoMaxFeaturizer.from_pretrained`` takes
them with the run-time settings."""
_POSITION = re.compile(r"^structure \d+: ")  # StructureError's prefix; skipped_ gives the position apart

_SITE_NET_BIBTEX = """@article{moran2023sitenet,
  title = {Site-Net: using global self-attention and real-space supercells to capture long-range
           interactions in crystal structures},
  author = {Moran, Michael and Gaultois, Michael W. and Gusev, Vladimir V. and Rosseinsky, Matthew J.},
  journal = {Digital Discovery},
  year = {2023},
  volume = {2},
  pages = {1297--1310},
  doi = {10.1039/D3DD00005B}
}"""
_DIM_MATERIALS_BIBTEX = """@article{moran2025deepinfomax,
  title = {Establishing Deep InfoMax as an effective self-supervised learning methodology in
           materials informatics},
  author = {Moran, Michael and Gusev, Vladimir V. and Gaultois, Michael W. and Antypov, Dmytro and
            Rosseinsky, Matthew J.},
  journal = {Digital Discovery},
  year = {2025},
  doi = {10.1039/D4DD00202D}
}"""
_DIM_BIBTEX = """@inproceedings{hjelm2019learning,
  title = {Learning deep representations by mutual information estimation and maximization},
  author = {Hjelm, R. Devon and Fedorov, Alex and Lavoie-Marchildon, Samuel and Grewal, Karan and
            Bachman, Phil and Trischler, Adam and Bengio, Yoshua},
  booktitle = {International Conference on Learning Representations},
  year = {2019}
}"""


def embed_point_sets(
    encoder: SiteNetEncoder,
    point_sets: Sequence[PointSet],
    device: str | torch.device = "auto",
    batch_sites: int = 1024,
    compile: CompileOption = False,
) -> np.ndarray:
    """Crystal vectors (means) of point sets, in order: float32 array (n, global_dim).

    The encoder itself stays where it is; a copy runs on a GPU or compiled
    (``compile``: see ``dim_sklearn.nn.compiled.resolve_compile``). Batches
    hold at most ``batch_sites`` unique sites (or one crystal, if larger);
    a crystal's vector does not depend on the others of its batch (to float32
    rounding), and larger batches spread the fixed cost of a batch over more
    crystals (docs/performance.md).
    """
    device = resolve_device(device)
    compiled = resolve_compile(compile, len(point_sets), device)
    model = encoder if device.type == "cpu" and not compiled else copy.deepcopy(encoder).to(device)
    set_compiled(model, compiled)
    model.eval()
    out = np.empty((len(point_sets), encoder.config.global_dim), dtype=np.float32)
    if not point_sets:
        return out
    # Crystals of similar supercell size together: little padding of the key axis.
    order = np.argsort([p.n_keys for p in point_sets], kind="stable")
    sizes = [point_sets[i].n_sites for i in order]
    sampler = SiteBudgetBatchSampler(sizes, max(batch_sites, max(sizes)), shuffle=False)
    with torch.no_grad():
        for positions in sampler:
            indices = order[positions]
            batch = collate_point_sets([point_sets[i] for i in indices]).to(device)
            out[indices] = model(batch).float().cpu().numpy()
    return out


def _model_params(encoder: PretrainedEncoder) -> dict[str, Any]:
    """The featurizer parameters that define ``encoder``'s model: point-set construction and widths."""
    config, point_set = encoder.config, encoder.point_set_config
    return {
        "max_atoms": point_set.max_atoms,
        "oxidation": point_set.oxidation,
        "width": config.width,
        "local_dim": config.local_dim,
        "global_width": config.global_width,
        "global_dim": config.global_dim,
        "n_rbf": config.n_rbf,
        "n_blocks": config.n_blocks,
    }


_ENCODER_TYPES = (str, os.PathLike, PretrainedEncoder)
_ENCODER_PARAMS = ("width", "local_dim", "global_width", "global_dim", "n_rbf", "n_blocks")
"""The encoder's fields that are featurizer parameters (the rest follow from the point sets)."""


class DeepInfoMaxFeaturizer(BaseFeaturizer):
    """Crystal vectors from a Site-Net encoder pretrained with Deep InfoMax.

    With ``encoder`` set (a shipped encoder's name, a saved folder or a
    [`PretrainedEncoder`][dim_sklearn.PretrainedEncoder]), ``fit`` takes that
    encoder as it is and trains nothing, so a featurizer built from the shipped
    encoder keeps it through ``clone``, ``Pipeline``, ``cross_val_score`` and
    ``GridSearchCV``.
    Otherwise ``fit`` pretrains the compact Site-Net encoder (about 63k parameters) on
    unlabelled structures with the Deep InfoMax objective of Moran et al.
    (2025): local and global mutual-information terms with Jensen-Shannon
    critics, negatives from other crystals of the batch, and the domain-aware
    composition-swapped, structure-swapped and scrambled negatives. Labels are
    never used (``y`` is ignored). ``transform`` returns the 64-d crystal vector
    mu_g of each structure, computed in batches in-process, for any downstream
    model. ``max_epochs=0`` gives the untrained (randomly initialised) encoder,
    the paper's baseline.

    Each structure becomes a Site-Net point set: its primitive cell, a
    near-orthorhombic supercell of at most ``max_atoms`` atoms, eight scaled
    Magpie properties per unique site and the minimum-image distances from each
    unique site to every supercell site.

    Every parameter is checked (type and range) at the start of ``fit`` and
    when a saved model is loaded; a bad value raises a ``ValueError`` naming it.

    Parameters
    ----------
    encoder : str, path, PretrainedEncoder or None, default=None
        A trained encoder to use instead of pretraining: the name of a shipped
        encoder ("dim-38k", [`list_pretrained`][dim_sklearn.encoder.list_pretrained]),
        a folder written by [`save`][dim_sklearn.DeepInfoMaxFeaturizer.save], or
        the encoder itself. The parameters that define the model (``max_atoms``,
        ``oxidation``, the widths, ``n_rbf``, ``n_blocks``) must then be the encoder's
        ([`from_pretrained`][dim_sklearn.DeepInfoMaxFeaturizer.from_pretrained]
        and [`load`][dim_sklearn.DeepInfoMaxFeaturizer.load] set them so); the
        pretraining parameters are not used. None: ``fit`` pretrains a new
        encoder.
    max_atoms : int, default=50
        Supercell size N (at most 1,000).
    max_sites : int, default=256
        Structures whose input cell holds more sites are refused (checked
        before the costly primitive-cell search; see
        [`PointSetConfig`][dim_sklearn.PointSetConfig]); at most 1,000.
    oxidation : bool, default=False
        Add the oxidation state as a ninth site feature.
    min_distance : float, default=0.5
        Structures with atoms closer than this (Angstrom) are refused as overlapping.
    width : int, default=64
        Hidden width of the encoder: the site and distance embeddings, the
        attention and value MLPs and the global encoder's layers before and
        after its mean over sites (at most 1,024).
    local_dim : int, default=32
        Size of each site's local vector mu_i (at most 1,024).
    global_width : int, default=128
        Width of the global encoder's per-site layer that is averaged over a
        crystal's unique sites (at most 1,024).
    global_dim : int, default=64
        Size of the crystal vector mu_g: the number of output features (at most
        1,024).
    n_rbf : int, default=16
        Expand each distance on this many Gaussian radial basis functions
        (0 to 8 Angstrom) in the encoder and the local critic; 0 gives the raw
        distance, as the paper; at most 256.
    n_blocks : int, default=1
        Attention blocks of the local encoder (at most 8). Each further block
        attends over the keys' vectors from the block before, so a site's
        vector also sees its neighbours' environments; each adds about
        ``7 * width ** 2`` parameters and the time of one more pass over the
        (site, key) pairs.
    domain_negatives : bool, default=True
        Use the composition-swapped, structure-swapped and scrambled negatives.
    local_scrambled : bool, default=True
        Add the site's own environment with shuffled keys as a fourth local
        negative (see ``dim_sklearn.nn.DeepInfoMax``).
    batch_negatives : bool, default=True
        Global negatives from every other crystal of the batch, not one.
    kl_weight : float, default=0.1
        Weight of the Gaussian KL regulariser of the sampled representations.
    max_epochs : int, default=100
        Upper bound on pretraining epochs; 0 skips pretraining. A run whose
        training loss turns NaN or infinite stops with a warning and keeps the
        best weights seen before.
    patience : int, default=10
        Stop after this many epochs in a row without improvement of the
        held-out DIM loss, and keep the best epoch's weights (patience counts as
        in skorch's ``EarlyStopping``, but any decrease is an improvement).
    batch_sites : int, default=300
        Unique sites per pretraining batch (the paper: 1,200).
    lr : float, default=1e-3
        Learning rate of both AdamW optimisers (amsgrad, eps 1e-7), encoder and
        critics (the paper's: 1e-4). The defaults of ``n_rbf``, the negatives,
        ``batch_sites`` and ``lr`` were chosen on the mp_crysxpp training split
        (docs/deep-infomax.md).
    weight_decay : float, default=1e-4
        Weight decay of both AdamW optimisers.
    validation_fraction : float, default=0.05
        Share of the structures held out to monitor the DIM loss, in [0, 1);
        at least two structures must be left for training.
    device : str, default="auto"
        "auto" (GPU if present), "cpu", "cuda", ...
    random_state : int, RandomState or None, default=None
        Seeds initialisation and training; an int gives bit-identical weights
        and features on CPU.
    cache_dir : str or None, default=None
        On-disk point-set cache shared by fit and transform. With one, ``fit``
        reads the point sets from the cache batch by batch instead of holding
        them all in memory.
    checkpoint_dir : str or None, default=None
        Write the pretraining state after every epoch; an interrupted fit with
        the same data and settings resumes from it.
    ignore_errors : bool, default=False
        In ``fit`` skip, and in ``transform`` give a NaN row for, structures that
        cannot be featurised; otherwise raise
        [`StructureError`][dim_sklearn.StructureError] naming the structure's
        position.
    verbose : bool, default=False
        Progress bars and per-epoch losses.
    n_jobs : int or None, default=None
        Processes that build point sets (joblib, loky backend; -1: one per
        core); None or 1: this process. Results are the same.
    compile : bool or "auto", default="auto"
        Run the encoder's pair blocks compiled with ``torch.compile`` in
        pretraining and ``transform`` (about twice as fast after a minute of
        compiling; ``dim_sklearn.nn.compiled``). "auto" compiles runs that
        pass at least 50,000 crystals through the network (training structures
        times ``max_epochs``; structures to transform); where compiling is
        impossible, it warns and runs eagerly. Compiled and eager results agree
        to float32 rounding.
    callbacks : list or tuple of PretrainCallback, or None, default=None
        Hooks that pretraining calls at its start, after every batch and
        epoch, and at its end ([`PretrainCallback`][dim_sklearn.pretrain.PretrainCallback]):
        to record, plot or save snapshots of the encoder while it trains. Not
        saved with the encoder.

    Attributes
    ----------
    encoder_ : PretrainedEncoder
        The pretrained encoder (on the CPU), with its point-set configuration
        and provenance; what [`save`][dim_sklearn.DeepInfoMaxFeaturizer.save]
        writes.
    history_ : list of dict
        Per-epoch training and held-out losses (see ``dim_sklearn.pretrain.pretrain``).
    best_epoch_ : int
        Epoch whose weights were kept.
    skipped_ : list of (int, str)
        After ``fit`` with ``ignore_errors=True``: the position in ``X`` of each
        structure left out of pretraining, and why (empty when every structure
        was used). Not saved: a loaded featurizer has none.
    metadata_ : dict
        What [`save`][dim_sklearn.DeepInfoMaxFeaturizer.save] was given about
        the model (for the shipped encoders: corpus, settings, held-out DIM
        terms); empty after ``fit``.
        ``history_``, ``best_epoch_`` and ``metadata_`` read ``encoder_.provenance``.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline                  # doctest: +SKIP
    >>> from sklearn.ensemble import RandomForestRegressor          # doctest: +SKIP
    >>> feat = DeepInfoMaxFeaturizer(random_state=0).fit(unlabelled) # doctest: +SKIP
    >>> X = feat.transform(labelled)                                # doctest: +SKIP
    >>> df = feat.featurize_dataframe(df, "structure")              # doctest: +SKIP
    """

    _PARAM_RULES: ClassVar[dict[str, Rule]] = {
        "encoder": optional(instance_of("a shipped encoder's name, a folder or a PretrainedEncoder", *_ENCODER_TYPES)),
        **PointSetConfig.FIELD_RULES,
        **{name: EncoderConfig.FIELD_RULES[name] for name in _ENCODER_PARAMS},
        **PRETRAINING_SETTINGS,
        "device": instance_of("a device name or a torch.device", str, torch.device),
        "cache_dir": optional(instance_of("a folder", str, os.PathLike)),
        "checkpoint_dir": optional(instance_of("a folder", str, os.PathLike)),
        "ignore_errors": boolean,
        "verbose": either(boolean, integer(0)),
        "n_jobs": optional(instance_of("an integer", int, np.integer)),
        "compile": either(boolean, one_of("auto")),
        "callbacks": optional(
            (
                "a list or tuple of PretrainCallback",
                lambda v: isinstance(v, (list, tuple)) and all(isinstance(c, PretrainCallback) for c in v),
            )
        ),
    }
    """What each parameter must be: the settings dataclasses' own rules, and those of the run."""

    def __init__(
        self,
        encoder: str | os.PathLike | PretrainedEncoder | None = None,
        max_atoms: int = PointSetConfig.max_atoms,
        max_sites: int = PointSetConfig.max_sites,
        oxidation: bool = PointSetConfig.oxidation,
        min_distance: float = PointSetConfig.min_distance,
        width: int = EncoderConfig.width,
        local_dim: int = EncoderConfig.local_dim,
        global_width: int = EncoderConfig.global_width,
        global_dim: int = EncoderConfig.global_dim,
        n_rbf: int = EncoderConfig.n_rbf,
        n_blocks: int = EncoderConfig.n_blocks,
        domain_negatives: bool = ObjectiveSettings.domain_negatives,
        local_scrambled: bool = ObjectiveSettings.local_scrambled,
        batch_negatives: bool = ObjectiveSettings.batch_negatives,
        kl_weight: float = ObjectiveSettings.kl_weight,
        max_epochs: int = PretrainSettings.max_epochs,
        patience: int = PretrainSettings.patience,
        batch_sites: int = PretrainSettings.batch_sites,
        lr: float = PretrainSettings.lr,
        weight_decay: float = PretrainSettings.weight_decay,
        validation_fraction: float = PretrainSettings.validation_fraction,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        cache_dir: str | None = None,
        checkpoint_dir: str | None = None,
        ignore_errors: bool = False,
        verbose: bool = False,
        n_jobs: int | None = None,
        compile: CompileOption = "auto",
        callbacks: Sequence[PretrainCallback] | None = None,
    ):
        self.encoder = encoder
        self.max_atoms = max_atoms
        self.max_sites = max_sites
        self.oxidation = oxidation
        self.min_distance = min_distance
        self.width = width
        self.local_dim = local_dim
        self.global_width = global_width
        self.global_dim = global_dim
        self.n_rbf = n_rbf
        self.n_blocks = n_blocks
        self.domain_negatives = domain_negatives
        self.local_scrambled = local_scrambled
        self.batch_negatives = batch_negatives
        self.kl_weight = kl_weight
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_sites = batch_sites
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.cache_dir = cache_dir
        self.checkpoint_dir = checkpoint_dir
        self.ignore_errors = ignore_errors
        self.verbose = verbose
        self.n_jobs = n_jobs
        self.compile = compile
        self.callbacks = callbacks

    @property
    def n_jobs(self) -> int | None:
        """The ``n_jobs`` parameter; matminer's ``set_n_jobs`` sets it too (it shares matminer's ``_n_jobs``)."""
        return self._n_jobs

    @n_jobs.setter
    def n_jobs(self, value: int | None) -> None:
        self._n_jobs = value

    # ------------------------------------------------------------------ configuration

    def _point_set_config(self) -> PointSetConfig:
        return PointSetConfig(
            max_atoms=self.max_atoms, max_sites=self.max_sites, oxidation=self.oxidation, min_distance=self.min_distance
        )

    def _encoder_config(self) -> EncoderConfig:
        return EncoderConfig(
            n_site_features=self._point_set_config().n_site_features,
            width=self.width,
            local_dim=self.local_dim,
            global_width=self.global_width,
            global_dim=self.global_dim,
            n_rbf=self.n_rbf,
            n_blocks=self.n_blocks,
        )

    def _point_sets(self, X: Any, ignore_errors: bool, verbose: bool = False) -> tuple[list, list]:
        cache = PointSetCache(self.cache_dir) if self.cache_dir else None
        if ignore_errors:
            return build_point_sets(
                X, self._point_set_config(), cache=cache, return_errors=True, verbose=verbose, n_jobs=self.n_jobs
            )
        point_sets = build_point_sets(X, self._point_set_config(), cache=cache, verbose=verbose, n_jobs=self.n_jobs)
        return point_sets, [None] * len(point_sets)

    # ------------------------------------------------------------------ scikit-learn

    def fit(self, X: Any, y: Any = None) -> DeepInfoMaxFeaturizer:
        """Pretrain the encoder with Deep InfoMax on structures ``X`` (labels are not used).

        Parameters
        ----------
        X : list, tuple, pandas Series or object array of pymatgen Structures
            At least one; pretraining (``max_epochs`` > 0) needs at least 4
            that can be featurised.
        y : ignored

        Raises
        ------
        ValueError
            A parameter out of range, no structures in ``X``, or too few to pretrain on.
        StructureError
            For the first structure that cannot be featurised, unless ``ignore_errors``.
        """
        check_fields(self, **self._PARAM_RULES)
        if not as_structure_list(X):
            raise ValueError(
                "X holds 0 structures; DeepInfoMaxFeaturizer.fit needs at least one (at least 4 to pretrain)"
            )
        if self.encoder is not None:
            self.encoder_ = self._given_encoder()
            self.skipped_ = []
            return self
        usable: Sequence[PointSet]
        if self.cache_dir:  # read back batch by batch: the memory of pretraining does not grow with the data
            usable, errors = stream_point_sets(
                X,
                self._point_set_config(),
                cache=PointSetCache(self.cache_dir),
                ignore_errors=self.ignore_errors,
                verbose=self.verbose,
                n_jobs=self.n_jobs,
            )
        else:
            point_sets, errors = self._point_sets(X, self.ignore_errors, self.verbose)
            usable = [p for p in point_sets if p is not None]
        self.skipped_ = [(i, _POSITION.sub("", e)) for i, e in enumerate(errors) if e is not None]
        if len(usable) < len(errors):
            warnings.warn(
                f"{len(errors) - len(usable)} of {len(errors)} structures could not be featurised and are "
                f"left out of pretraining; first: {next(e for e in errors if e)}",
                stacklevel=2,
            )
        init_seed, train_seed = spawn_seeds(self.random_state, 2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = DeepInfoMax(
                SiteNetEncoder(self._encoder_config()),
                kl_weight=self.kl_weight,
                domain_negatives=self.domain_negatives,
                local_scrambled=self.local_scrambled,
                batch_negatives=self.batch_negatives,
            )
        history: list[dict[str, float]] = []
        best_epoch = 0
        if self.max_epochs > 0:
            settings = PretrainSettings(
                max_epochs=self.max_epochs,
                patience=self.patience,
                batch_sites=self.batch_sites,
                lr=self.lr,
                weight_decay=self.weight_decay,
                validation_fraction=self.validation_fraction,
            )
            history, best_epoch = pretrain(
                model,
                usable,
                settings,
                random_state=train_seed,
                device=self.device,
                checkpoint_dir=self.checkpoint_dir,
                verbose=self.verbose,
                compile=self.compile,
                callbacks=self.callbacks or (),
            )
        self.encoder_ = PretrainedEncoder(
            model.encoder.cpu().eval(),
            self._point_set_config(),
            {"settings": self._settings(), "history": history, "best_epoch": best_epoch},
        )
        return self

    def _given_encoder(self) -> PretrainedEncoder:
        """The encoder ``encoder`` names, checked against the parameters that define the model."""
        encoder = resolve_encoder(self.encoder)
        assert encoder is not None
        differ = {name: value for name, value in _model_params(encoder).items() if getattr(self, name) != value}
        if differ:
            ours = ", ".join(f"{name}={getattr(self, name)!r}" for name in differ)
            theirs = ", ".join(f"{name}={value!r}" for name, value in differ.items())
            raise ValueError(
                f"encoder={self.encoder!r} has {theirs}, but the featurizer was given {ours}: leave these "
                f"parameters at the encoder's (from_pretrained and load set them), or set encoder=None to pretrain"
            )
        return encoder

    def _settings(self) -> dict[str, Any]:
        settings = {name: getattr(self, name) for name in PRETRAINING_SETTINGS}
        if not isinstance(settings["random_state"], (int, type(None))):
            settings["random_state"] = None
        return settings

    @property
    def history_(self) -> list[dict[str, Any]]:
        return self.encoder_.provenance["history"]

    @property
    def best_epoch_(self) -> int:
        return self.encoder_.provenance["best_epoch"]

    @property
    def metadata_(self) -> dict[str, Any]:
        return self.encoder_.provenance["metadata"]

    def _embed(self, X: Any, ignore_errors: bool, verbose: bool = False) -> tuple[np.ndarray, list[str | None]]:
        """Features and per-row errors; a row the encoder could not make finite is an error too."""
        check_is_fitted(self, "encoder_")
        point_sets, errors = self._point_sets(X, ignore_errors, verbose)
        features = np.full((len(point_sets), self.encoder_.config.global_dim), np.nan)
        ok = [i for i, p in enumerate(point_sets) if p is not None]
        features[ok] = embed_point_sets(
            self.encoder_.module, [point_sets[i] for i in ok], self.device, compile=self.compile
        )
        for i in ok:
            if not np.isfinite(features[i]).all():
                error = StructureError("the encoder gave NaN or infinite features", i)
                if not ignore_errors:
                    raise error
                features[i], errors[i] = np.nan, str(error)
        return features, errors

    def transform(self, X: Any) -> np.ndarray:
        """Crystal vectors of structures ``X``: float64 array of shape (n_structures, global_dim).

        No structures give an empty array of shape (0, global_dim), as for any
        other number of rows.

        Raises
        ------
        StructureError
            For a structure that cannot be featurised, unless ``ignore_errors``
            (then its row is NaN).
        """
        return self._embed(X, self.ignore_errors)[0]

    def __sklearn_tags__(self) -> Tags:
        """A transformer of a 1-D sequence of structures (not a 2-D numeric array), without labels."""
        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        tags.input_tags = InputTags(one_d_array=True, two_d_array=False)
        tags.target_tags.required = False
        return tags

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output feature names, so ``set_output(transform="pandas")`` works."""
        return np.asarray(self.feature_labels(), dtype=object)

    # ------------------------------------------------------------------ matminer

    def featurize(self, *x: Any) -> list[float]:
        """Crystal vector of one structure."""
        try:
            return self._embed([x[0]], ignore_errors=False)[0][0].tolist()
        except StructureError as exc:
            raise StructureError(exc.reason) from None

    def featurize_many(
        self, entries: Any, ignore_errors: bool = False, return_errors: bool = False, pbar: bool = True
    ) -> list[list]:
        """Crystal vectors of many structures, batched in-process (no multiprocessing pool).

        Same contract as matminer's: with ``ignore_errors`` a failed structure
        gives a row of NaN; ``return_errors`` (which needs ``ignore_errors``)
        appends its error message (NaN when it succeeded).
        """
        if return_errors and not ignore_errors:
            raise ValueError("Please set ignore_errors to True to use return_errors.")
        features, errors = self._embed(entries, ignore_errors, verbose=bool(pbar))
        rows = features.tolist()
        if return_errors:
            rows = [[*row, error if error is not None else np.nan] for row, error in zip(rows, errors)]
        return rows

    def feature_labels(self) -> list[str]:
        return [f"DIM_{k}" for k in range(self.global_dim)]

    def citations(self) -> list[str]:
        return [_SITE_NET_BIBTEX, _DIM_MATERIALS_BIBTEX, _DIM_BIBTEX]

    def implementors(self) -> list[str]:
        return ["dim-sklearn developers"]

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
        """Write the fitted encoder (``encoder_``) to the folder ``path``: safetensors weights and a JSON config.

        ``metadata`` (JSON-serialisable: corpus, timings, ...) is stored with it
        and comes back as ``metadata_`` from
        [`load`][dim_sklearn.DeepInfoMaxFeaturizer.load]; by default, the
        ``metadata_`` it has.
        """
        check_is_fitted(self, "encoder_")
        encoder = self.encoder_
        if metadata is not None:
            encoder = PretrainedEncoder(
                encoder.module, encoder.point_set_config, {**encoder.provenance, "metadata": metadata}
            )
        encoder.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DeepInfoMaxFeaturizer:
        """A fitted featurizer from a folder written by ``save`` (no code is executed), or a shipped encoder's name.

        Its ``encoder`` parameter is ``path``, so a clone fitted anywhere gives
        the same vectors.

        The file is not trusted: every field is checked, by the same rules as
        [`PretrainedEncoder.load`][dim_sklearn.PretrainedEncoder.load] and
        ``SiteNetRegressor(encoder=path)`` apply (see
        ``dim_sklearn.encoder.format.load_encoder``). The parameters are read from
        the encoder's sections: the widths from its configuration, ``max_atoms``,
        ``max_sites``, ``oxidation`` and ``min_distance`` from its point-set
        configuration, the pretraining parameters from its recorded settings
        (checked on loading as ``fit`` checks them; one not recorded takes its default). The
        settings of the machine and run (``device``, ``cache_dir``,
        ``checkpoint_dir``, ``ignore_errors``, ``verbose``, ``n_jobs``, ``compile``, ``callbacks``) are not
        taken from it but left at their defaults; set them with ``set_params``.

        Raises
        ------
        FileNotFoundError
            ``path`` is not a saved encoder.
        IncompatibleModelError
            Any part of the files is damaged, out of range or inconsistent, or
            the encoder is not one this featurizer trains.
        """
        encoder = PretrainedEncoder.load(path)
        point_set, settings = encoder.point_set_config, encoder.provenance["settings"]
        params = {name: settings[name] for name in PRETRAINING_SETTINGS if name in settings}
        params.update(_model_params(encoder), max_sites=point_set.max_sites, min_distance=point_set.min_distance)
        featurizer = cls(encoder=path, **params)
        if featurizer._encoder_config() != encoder.config:
            raise IncompatibleModelError(f"{path}: {encoder.config} is not an encoder {cls.__name__} trains")
        featurizer.encoder_ = encoder
        return featurizer

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_PRETRAINED, **params: Any) -> DeepInfoMaxFeaturizer:
        """The encoder that ships with the package, fitted: no training, no download.

        Parameters
        ----------
        name : str, default="dim-38k"
            One of [`list_pretrained`][dim_sklearn.encoder.list_pretrained].
        **params
            Run-time settings only: ``device``, ``cache_dir``, ``ignore_errors``,
            ``verbose``, ``n_jobs``, ``compile``, and the input limits ``max_sites`` and ``min_distance``.

        Examples
        --------
        >>> feat = DeepInfoMaxFeaturizer.from_pretrained()      # doctest: +SKIP
        >>> X = feat.transform(structures)                      # doctest: +SKIP
        >>> feat.metadata_["corpus"]["n_structures"]            # doctest: +SKIP
        """
        unknown = set(params) - _RUNTIME_PARAMS - _INPUT_LIMITS
        if unknown:
            raise ValueError(
                f"from_pretrained takes run-time settings only "
                f"({', '.join(sorted(_RUNTIME_PARAMS | _INPUT_LIMITS))}); "
                f"got {', '.join(sorted(unknown))}: fit a new featurizer to change the model"
            )
        pretrained_path(name)  # a ValueError naming the shipped encoders for an unknown name
        return cls.load(name).set_params(**params)
