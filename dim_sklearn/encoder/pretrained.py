"""PretrainedEncoder: a trained Site-Net encoder with the point-set configuration it reads and its provenance."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..nn import EncoderConfig, SiteNetEncoder
from ..pointsets import PointSetConfig
from .format import (
    PROVENANCE_FIELDS,
    encoder_document,
    encoder_from_state,
    load_encoder,
    provenance_problems,
    read_document,
    save_encoder,
)
from .format import versions as installed_versions
from .shipped import DEFAULT_PRETRAINED, list_pretrained, pretrained_path

__all__ = ["PretrainedEncoder", "resolve_encoder"]


class PretrainedEncoder:
    """A trained Site-Net encoder as one artifact: its weights, what it reads and where it came from.

    It owns what using the encoder needs, independent of any estimator: the
    ``dim_sklearn.nn.SiteNetEncoder`` module (widths and weights) and the
    [`PointSetConfig`][dim_sklearn.PointSetConfig] that turns structures into its input.
    [`DeepInfoMaxFeaturizer`][dim_sklearn.DeepInfoMaxFeaturizer] keeps its fitted encoder as
    one (``encoder_``); [`SiteNetRegressor`][dim_sklearn.SiteNetRegressor] takes one, or a
    folder holding one, as ``encoder``. It is saved as a folder in the format of
    ``dim_sklearn.encoder.format`` and loads without executing code.

    Parameters
    ----------
    module : SiteNetEncoder
        The encoder.
    point_set_config : PointSetConfig
        How structures become the encoder's input; it must give as many site
        features as the encoder reads.
    provenance : dict, optional
        Where the weights came from, any of: ``versions`` (of dim-sklearn, torch
        and pymatgen that trained them; default: the installed ones),
        ``settings`` (pretraining settings: numbers, strings, booleans, None),
        ``history`` (list of per-epoch dicts), ``best_epoch`` (int) and
        ``metadata`` (JSON object: corpus, timings, ...). The rest are empty.
        Checked as loading checks a file's (the recorded pretraining settings
        of ``dim_sklearn.encoder.format.PRETRAINING_SETTINGS`` by their constraints):
        a ``ValueError`` names what is wrong.

    Attributes
    ----------
    module : SiteNetEncoder
    point_set_config : PointSetConfig
    provenance : dict
        All five entries.

    Examples
    --------
    >>> from dim_sklearn.encoder import pretrained_path                     # doctest: +SKIP
    >>> encoder = PretrainedEncoder.load(pretrained_path("dim-38k"))          # doctest: +SKIP
    >>> encoder.point_set_config.max_atoms, encoder.config.global_dim         # doctest: +SKIP
    (50, 64)
    >>> encoder.provenance["metadata"]["corpus"]["n_structures"]              # doctest: +SKIP
    38109
    >>> SiteNetRegressor(encoder=encoder)                                     # doctest: +SKIP
    """

    def __init__(
        self, module: SiteNetEncoder, point_set_config: PointSetConfig, provenance: Mapping[str, Any] | None = None
    ):
        provenance = dict(provenance or {})
        unknown = sorted(set(provenance) - set(PROVENANCE_FIELDS))
        if unknown:
            raise ValueError(f"unknown provenance entries {', '.join(unknown)}; known: {', '.join(PROVENANCE_FIELDS)}")
        if point_set_config.n_site_features != module.config.n_site_features:
            raise ValueError(
                f"the point-set configuration gives {point_set_config.n_site_features} site features, "
                f"the encoder reads {module.config.n_site_features}"
            )
        provenance = {
            "versions": installed_versions(),
            "settings": {},
            "history": [],
            "best_epoch": 0,
            "metadata": {},
            **provenance,
        }
        problems = provenance_problems(provenance)
        if problems:  # refused here, as loading would refuse the file save writes
            raise ValueError(f"unusable provenance: {'; '.join(problems)}")
        self.module = module
        self.point_set_config = point_set_config
        self.provenance = provenance

    @property
    def config(self) -> EncoderConfig:
        """The encoder's widths and distance input."""
        return self.module.config

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights."""
        return self.module.state_dict()

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of the artifact (its ``config.json``): format, encoder, point set, provenance."""
        return encoder_document(self.config, self.point_set_config, self.provenance)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> PretrainedEncoder:
        """The artifact of a JSON document (as ``as_dict`` gives) and its weights.

        Both are checked as [`load`][dim_sklearn.PretrainedEncoder.load] checks files.

        Raises
        ------
        IncompatibleModelError
            A field out of range or of the wrong type, or weights that do not
            fit the encoder the document describes or are not finite.
        """
        config, point_set_config, provenance = read_document(document, "the document")
        return cls(encoder_from_state(config, state_dict, "the state_dict"), point_set_config, provenance)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the artifact to the folder ``path`` (created if needed): ``config.json``, ``encoder.safetensors``."""
        return save_encoder(path, self.module, self.point_set_config, self.provenance)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PretrainedEncoder:
        """The encoder that ships under the name ``path`` or that is saved in the folder ``path``, on the CPU.

        The shipped names are those of [`list_pretrained`][dim_sklearn.encoder.list_pretrained] ("dim-38k").
        No code is executed.

        Raises
        ------
        FileNotFoundError
            ``path`` is not a saved encoder.
        IncompatibleModelError
            Any part of the files is damaged, out of range or inconsistent (see
            ``dim_sklearn.encoder.format.load_encoder``).
        """
        if isinstance(path, str) and path in list_pretrained():
            path = pretrained_path(path)
        return cls(*load_encoder(path))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.config}, {self.point_set_config}, best_epoch={self.provenance['best_epoch']})"
        )


def resolve_encoder(encoder: Any) -> PretrainedEncoder | None:
    """The encoder an estimator's ``encoder`` parameter names.

    Parameters
    ----------
    encoder : None, PretrainedEncoder, str, path or fitted DeepInfoMaxFeaturizer
        None; the encoder itself; the name of a shipped encoder ("pretrained":
        the default one, "dim-38k"); a folder holding a saved encoder; or a
        fitted featurizer, whose ``encoder_`` is used.

    Raises
    ------
    ValueError
        An unfitted featurizer, or no shipped encoder of that name and no such folder.
    TypeError
        Anything else.
    """
    if encoder is None or isinstance(encoder, PretrainedEncoder):
        return encoder
    if isinstance(encoder, (str, os.PathLike)):
        return PretrainedEncoder.load(DEFAULT_PRETRAINED if encoder == "pretrained" else encoder)
    fitted = getattr(encoder, "encoder_", None)  # a fitted DeepInfoMaxFeaturizer holds its encoder there
    if isinstance(fitted, PretrainedEncoder):
        return fitted
    if hasattr(encoder, "fit"):
        raise ValueError(f"encoder: the {type(encoder).__name__} is not fitted; call its fit first")
    raise TypeError(
        f'encoder must be a shipped encoder\'s name ("pretrained", {", ".join(map(repr, list_pretrained()))}), '
        "a PretrainedEncoder, a folder holding one, a fitted DeepInfoMaxFeaturizer, or None; "
        f"got {type(encoder).__name__}"
    )
