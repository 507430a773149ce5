"""dim-sklearn: Deep InfoMax pretraining of Site-Net crystal encoders.

[`DeepInfoMaxFeaturizer`][dim_sklearn.DeepInfoMaxFeaturizer] pretrains a Site-Net encoder with Deep InfoMax on
unlabelled structures and turns structures into fixed-length vectors; it is a
scikit-learn transformer and a matminer featurizer. [`SiteNetRegressor`][dim_sklearn.SiteNetRegressor]
(skorch) fine-tunes that encoder, or trains one from scratch, on labels; a trained encoder is saved and
loaded as a [`PretrainedEncoder`][dim_sklearn.PretrainedEncoder]. With few labels,
[`SiteNetEnsemble`][dim_sklearn.SiteNetEnsemble] fine-tunes one network per fold of the labels and blends their
mean with a forest on composition descriptors.

The pipeline, package by package: structures become Site-Net point sets, cached and batched by a budget of
unique sites (``dim_sklearn.pointsets``); a Site-Net encoder (``dim_sklearn.nn``), pretrained by
``dim_sklearn.pretrain`` and kept with its file format and the shipped encoders in ``dim_sklearn.encoder``, turns
the batches into vectors; the estimators use both. Real data sets load by name (``dim_sklearn.datasets``).
"""

from ._version import __version__ as __version__
from .datasets import list_datasets, load_dataset
from .encoder import PretrainedEncoder
from .ensemble import SiteNetEnsemble
from .exceptions import (
    DamagedCacheEntryWarning,
    DatasetNotFoundError,
    DimSklearnError,
    IncompatibleModelError,
    StructureError,
    WriteError,
)
from .featurizer import DeepInfoMaxFeaturizer
from .pointsets import (
    PointSet,
    PointSetCache,
    PointSetConfig,
    build_point_set,
    build_point_sets,
)
from .regressor import SiteNetRegressor

__all__ = [
    "DamagedCacheEntryWarning",
    "DatasetNotFoundError",
    "DeepInfoMaxFeaturizer",
    "DimSklearnError",
    "IncompatibleModelError",
    "PointSet",
    "PointSetCache",
    "PointSetConfig",
    "PretrainedEncoder",
    "SiteNetEnsemble",
    "SiteNetRegressor",
    "StructureError",
    "WriteError",
    "build_point_set",
    "build_point_sets",
    "list_datasets",
    "load_dataset",
]
