"""The trained encoder: the object that holds one, its file format, and the encoders shipped with the package.

A [`PretrainedEncoder`][dim_sklearn.PretrainedEncoder] (``pretrained``) owns a
``dim_sklearn.nn.SiteNetEncoder`` with the point-set configuration it reads and
its provenance; ``format`` writes it as a folder (``encoder.safetensors`` +
``config.json``) and reads such a folder back as untrusted input; ``shipped``
finds the encoders that come with the package by name. The estimators use an
encoder from here; nothing here imports an estimator.
"""

from .format import PRETRAINING_SETTINGS, load_encoder, save_encoder
from .pretrained import PretrainedEncoder, resolve_encoder
from .shipped import DEFAULT_PRETRAINED, list_pretrained, pretrained_path

__all__ = [
    "DEFAULT_PRETRAINED",
    "PRETRAINING_SETTINGS",
    "PretrainedEncoder",
    "list_pretrained",
    "load_encoder",
    "pretrained_path",
    "resolve_encoder",
    "save_encoder",
]
