"""dim-sklearn: Deep InfoMax pretraining of Site-Net crystal encoders.

[`DeepInfoMaxFeaturizer`][dim_sklearn.DeepInfoMaxFeaturizer] pretrains a Site-Net encoder with Deep InfoMax on
unlabelled structures and turns structures into fixed-length vectors; it is a
scikit-learn transformer and a matminer featurizer. [`SiteNetRegressor`][dim_sklearn.SiteNetRegressor]
(skorch) fine-tunes that encoder, or trains one from scratch, on labels; a trained encoder is saved and
loaded as a [`PretrainedEncoder`][dim_sklearn.PretrainedEncoder]. Crystals become Site-Net
point sets (``dim_sklearn.pointset``), batched by a budget of unique sites
(``dim_sklearn.batching``); real data sets load by name (``dim_sklearn.datasets``).
"""

from ._version import __version__ as __version__
from .artifact import PretrainedEncoder
from .cache import PointSetCache
from .datasets import list_datasets, load_dataset
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
from .pointset import (
    PointSet,
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
