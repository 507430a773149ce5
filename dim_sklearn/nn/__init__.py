"""Torch modules only: the Site-Net encoders, the Deep InfoMax critics and losses, the regression model."""

from .encoder import (
    DistanceExpansion,
    EncoderConfig,
    GlobalEncoder,
    LocalEncoder,
    SiteNetEncoder,
    segment_mean,
)
from .infomax import (
    CHANCE,
    DeepInfoMax,
    EnvironmentCritic,
    ObjectiveSettings,
    cyclic_key_index,
    gaussian_kl,
    partner_sites,
)
from .regression import SiteNetModel
from .sitenet import SiteNet, SiteNetConfig

__all__ = [
    "CHANCE",
    "DeepInfoMax",
    "DistanceExpansion",
    "EncoderConfig",
    "EnvironmentCritic",
    "GlobalEncoder",
    "LocalEncoder",
    "ObjectiveSettings",
    "SiteNet",
    "SiteNetConfig",
    "SiteNetEncoder",
    "SiteNetModel",
    "cyclic_key_index",
    "gaussian_kl",
    "partner_sites",
    "segment_mean",
]
