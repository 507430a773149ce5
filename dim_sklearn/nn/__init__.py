"""Torch modules only: the Site-Net encoder and the Deep InfoMax critics and losses."""

from .encoder import EncoderConfig, GlobalEncoder, LocalEncoder, SiteNetEncoder, segment_mean
from .infomax import DeepInfoMax, EnvironmentCritic, cyclic_key_index, gaussian_kl, partner_sites

__all__ = [
    "DeepInfoMax",
    "EncoderConfig",
    "EnvironmentCritic",
    "GlobalEncoder",
    "LocalEncoder",
    "SiteNetEncoder",
    "cyclic_key_index",
    "gaussian_kl",
    "partner_sites",
    "segment_mean",
]
