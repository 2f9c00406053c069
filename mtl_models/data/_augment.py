"""Batch augmentations applied on the device: a small declarative list in the experiment.

Each augmentation is one class behind a narrow base (``__call__(x, targets, generator)``)
registered by name, e.g. ``[{name: random_crop, padding: 4}, {name: hflip, p: 0.5}]``.
Random draws come from the trainer's CPU generator (a few numbers per batch), so a
resumed trial augments exactly as an uninterrupted one.

Dense targets (``(B, H, W)`` or ``(B, C, H, W)`` at the image's size) are moved with
the image, with the missing value (-1, NaN) where padding enters. Image-level labels
are not: each augmentation declares its ``effect`` (``mirror``, ``shift``,
``intensity``) and the experiment refuses one whose effect changes a task's meaning
(a mirror swaps left and right eyes and moves x coordinates) unless the user lists
the task in ``safe_for``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._registry import Registry, keyword_options

Targets = dict[str, Tensor]


class Augmentation(ABC):
    """One batch transform; ``effect`` says what about the image it changes."""

    name: ClassVar[str]
    effect: ClassVar[str]  # "mirror", "shift" or "intensity"

    @abstractmethod
    def __call__(self, x: Tensor, targets: Targets, generator: torch.Generator) -> tuple[Tensor, Targets]:
        """``x`` ``(B, C, H, W)`` floats in [0, 1] on the device; returns the transformed batch."""


_AUGMENTATIONS: Registry[type[Augmentation]] = Registry("augmentation")


def register_augmentation(cls: type[Augmentation] | None = None, *, replace: bool = False) -> Any:
    """Register an augmentation class under its ``name``: ``@register_augmentation`` (or
    ``@register_augmentation(replace=True)``). Its ``__init__`` keyword arguments are its options."""
    if cls is None:
        return lambda target: register_augmentation(target, replace=replace)
    return _AUGMENTATIONS.register(cls.name, cls, replace=replace)


def available_augmentations() -> list[str]:
    return _AUGMENTATIONS.names()


def augmentation_class(name: str) -> type[Augmentation]:
    return _AUGMENTATIONS.get(name)


def augmentation_options(name: str) -> dict[str, Any]:
    """The options ``name`` takes and their defaults (for validating the experiment file)."""
    return {k: p.default for k, p in keyword_options(augmentation_class(name)).items()}


def _spatial(targets: Targets, x: Tensor) -> list[str]:
    """Names of the dense targets: those at the image's height and width."""
    return [k for k, t in targets.items() if t.dim() >= 3 and t.shape[-2:] == x.shape[-2:]]


def _missing(t: Tensor) -> float:
    return float("nan") if t.is_floating_point() else -1


def _flip_where(t: Tensor, flip: Tensor) -> Tensor:
    return torch.where(flip.view(-1, *([1] * (t.dim() - 1))), t.flip(-1), t)


def _shift(t: Tensor, dy: Tensor, dx: Tensor, pad: int, fill: float) -> Tensor:
    """Each sample's ``(H, W)`` window at offset ``(dy, dx)`` of ``t`` padded by ``pad``."""
    height, width = t.shape[-2:]
    b = t.shape[0]
    padded = F.pad(t.unsqueeze(1) if t.dim() == 3 else t, (pad, pad, pad, pad), value=fill)
    rows = dy.view(-1, 1, 1) + torch.arange(height, device=t.device).view(1, -1, 1)
    cols = dx.view(-1, 1, 1) + torch.arange(width, device=t.device).view(1, 1, -1)
    index = (rows * (width + 2 * pad) + cols).view(b, 1, height * width).expand(b, padded.shape[1], -1)
    out = padded.flatten(2).gather(2, index).view(b, padded.shape[1], height, width)
    return out.squeeze(1) if t.dim() == 3 else out


@register_augmentation
class RandomCrop(Augmentation):
    """Pad by ``padding`` pixels (``fill`` in [0, 1]) and crop back at a random offset (CIFAR-style)."""

    name = "random_crop"
    effect = "shift"

    def __init__(self, padding: int = 4, fill: float = 0.0) -> None:
        if int(padding) < 1:
            raise ValueError(f"random_crop: padding must be >= 1 pixel, got {padding}.")
        self.padding, self.fill = int(padding), float(fill)

    def __call__(self, x: Tensor, targets: Targets, generator: torch.Generator) -> tuple[Tensor, Targets]:
        offsets = torch.randint(0, 2 * self.padding + 1, (2, x.shape[0]), generator=generator).to(x.device)
        dy, dx = offsets[0], offsets[1]
        out = dict(targets)
        for k in _spatial(targets, x):
            out[k] = _shift(targets[k], dy, dx, self.padding, _missing(targets[k]))
        return _shift(x, dy, dx, self.padding, self.fill), out


@register_augmentation
class HorizontalFlip(Augmentation):
    """Mirror left-right with probability ``p``. Changes left/right and x-coordinate labels."""

    name = "hflip"
    effect = "mirror"

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"hflip: p must be in [0, 1], got {p}.")
        self.p = float(p)

    def __call__(self, x: Tensor, targets: Targets, generator: torch.Generator) -> tuple[Tensor, Targets]:
        flip = (torch.rand(x.shape[0], generator=generator) < self.p).to(x.device)
        out = dict(targets)
        for k in _spatial(targets, x):
            out[k] = _flip_where(targets[k], flip)
        return _flip_where(x, flip), out


@register_augmentation
class Brightness(Augmentation):
    """Scale each image's intensity by a factor in ``[1 - max_delta, 1 + max_delta]``."""

    name = "brightness"
    effect = "intensity"

    def __init__(self, max_delta: float = 0.2) -> None:
        if not 0.0 < float(max_delta) < 1.0:
            raise ValueError(f"brightness: max_delta must be in (0, 1), got {max_delta}.")
        self.max_delta = float(max_delta)

    def __call__(self, x: Tensor, targets: Targets, generator: torch.Generator) -> tuple[Tensor, Targets]:
        factor = 1.0 + self.max_delta * (2 * torch.rand(x.shape[0], generator=generator) - 1)
        return (x * factor.to(x.device).view(-1, 1, 1, 1)).clamp_(0.0, 1.0), targets


class Pipeline:
    """Augmentations applied in order to a training batch."""

    def __init__(self, steps: Sequence[Augmentation]) -> None:
        self.steps = list(steps)

    def __call__(self, x: Tensor, targets: Targets, generator: torch.Generator) -> tuple[Tensor, Targets]:
        for step in self.steps:
            x, targets = step(x, targets, generator)
        return x, targets

    def __bool__(self) -> bool:
        return bool(self.steps)


def build_augmentations(specs: Sequence[dict[str, Any]] | None) -> Pipeline:
    """The pipeline of ``[{name: ..., option: value, safe_for: [...]}, ...]`` (``safe_for`` is a check, ignored here)."""
    steps = []
    for spec in specs or []:
        options = {k: v for k, v in spec.items() if k not in ("name", "safe_for")}
        steps.append(augmentation_class(spec["name"])(**options))
    return Pipeline(steps)
