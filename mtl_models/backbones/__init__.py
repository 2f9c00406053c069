"""Backbones: ordered named stages with their output channels, from a registry."""
from ._registry import (
    Stage,
    available_backbones,
    backbone_options,
    build_backbone,
    load_local_weights,
    register_backbone,
    stage_names,
)
from . import _small_cnn, _torchvision  # noqa: F401  (register the built-in backbones)

__all__ = [
    "Stage",
    "available_backbones",
    "backbone_options",
    "build_backbone",
    "load_local_weights",
    "register_backbone",
    "stage_names",
]
