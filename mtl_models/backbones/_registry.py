"""Backbones as ordered lists of named stages, and the registry that builds them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .._registry import Registry, keyword_options


@dataclass
class Stage:
    """One stage of a backbone: a module and the channels it outputs.

    A split point is an index into the list of stages: stages ``0..k-1`` run before
    the split. ``out_channels`` sizes the heads and the cross-stitch units that
    follow the stage, so no model code needs to know which backbone it holds.
    ``spatial`` is False for stages that output vectors ``(B, C)`` (fully connected
    layers such as AlexNet's fc6/fc7) instead of maps ``(B, C, H, W)``.
    """

    name: str
    module: nn.Module
    out_channels: int
    spatial: bool = True


BackboneFactory = Callable[..., list[Stage]]

_BACKBONES: Registry[BackboneFactory] = Registry("backbone")


def register_backbone(name: str, *, replace: bool = False) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register ``factory(in_channels, weights=None, **options) -> list[Stage]``.

    The factory must build fresh modules on every call (each task column or branch
    is its own copy) and must never download anything. Its other keyword arguments
    are the options ``backbone.options`` may give (:func:`backbone_options`). A taken
    name is refused unless ``replace`` (:class:`mtl_models.Registry`).
    """
    return _BACKBONES.register(name, replace=replace)


def available_backbones() -> list[str]:
    return _BACKBONES.names()


def backbone_options(name: str) -> list[str]:
    """The options (keyword arguments besides ``in_channels`` and ``weights``) a backbone takes."""
    return list(keyword_options(_BACKBONES.get(name), skip=("in_channels", "weights")))


def build_backbone(
    name: str, in_channels: int, weights: str | Path | None = None, **options: Any
) -> list[Stage]:
    """Build the stages of backbone ``name`` for inputs with ``in_channels`` channels.

    ``weights`` is a local file (a ``state_dict`` saved with ``torch.save``); nothing
    is downloaded.
    """
    stages = _BACKBONES.get(name)(in_channels, weights=weights, **options)
    if not stages:
        raise ValueError(f"Backbone {name!r} returned no stages.")
    return stages


def stage_names(name: str, in_channels: int = 3, **options: Any) -> list[str]:
    """The stage names of a backbone (split point ``k`` means "after ``names[k-1]``")."""
    return [s.name for s in build_backbone(name, in_channels, **options)]


def load_local_weights(module: nn.Module, weights: str | Path, *, strict: bool = True) -> None:
    """Load a ``state_dict`` from a local file into ``module``.

    Accepts a plain state dict or a dict with a ``state_dict``/``model`` entry (the
    usual checkpoint layouts).
    """
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"Backbone weights file {str(path)!r} does not exist.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    missing, unexpected = module.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(
            f"Weights file {str(path)!r} does not match the backbone: "
            f"missing keys {list(missing)[:5]}, unexpected keys {list(unexpected)[:5]}."
        )
