"""Multi-task datasets held as tensors: uint8 images and one target tensor per task."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from ..tasks import TaskSpec


@dataclass
class Split:
    """One split: ``images`` ``(N, C, H, W)`` uint8 and ``targets[task]`` ``(N, ...)``.

    Missing labels are stored as the task kind's missing value (-1 for classes, NaN
    for regression) and skipped by that task's loss and metric only.
    """

    images: Tensor
    targets: dict[str, Tensor]

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        for name, t in self.targets.items():
            if t.shape[0] != n:
                raise ValueError(f"Task {name!r} has {t.shape[0]} targets for {n} images.")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), {k: v.to(device) for k, v in self.targets.items()})

    def batch(self, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Images as floats in [0, 1] and targets, for the rows in ``index``."""
        x = self.images[index].float().div_(255.0)
        return x, {k: v[index] for k, v in self.targets.items()}


@dataclass
class MultiTaskData:
    """A dataset's splits (``train``, ``val``, optionally ``test``) and its tasks."""

    tasks: list[TaskSpec]
    splits: dict[str, Split]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for required in ("train", "val"):
            if required not in self.splits or len(self.splits[required]) == 0:
                raise ValueError(f"Dataset {self.description!r}: split {required!r} is missing or empty.")

    def input_spec(self) -> dict[str, Any]:
        """Channels, size and the train split's per-channel mean/std (in [0, 1] units)."""
        images = self.splits["train"].images
        channels, height, width = images.shape[1:]
        flat = images.transpose(0, 1).reshape(channels, -1).float().div_(255.0)
        std = flat.std(dim=1).clamp_min(1e-3)
        return {
            "channels": int(channels),
            "height": int(height),
            "width": int(width),
            "mean": [round(v, 6) for v in flat.mean(dim=1).tolist()],
            "std": [round(v, 6) for v in std.tolist()],
        }

    def label_summary(self) -> dict[str, dict[str, Any]]:
        """Per split and task: rows, labelled rows and the missing-label rate."""
        out: dict[str, dict[str, Any]] = {}
        for split_name, split in self.splits.items():
            for spec in self.tasks:
                target = split.targets[spec.name]
                valid = spec.kind_impl.valid_mask(target)
                if valid.dim() > 1:
                    valid = valid.flatten(1).all(dim=1)
                labelled = int(valid.sum())
                out[f"{split_name}/{spec.name}"] = {
                    "rows": len(split),
                    "labelled": labelled,
                    "missing_rate": 1.0 - labelled / max(len(split), 1),
                }
        return out


DataLoaderFn = Callable[..., MultiTaskData]

_SOURCES: dict[str, DataLoaderFn] = {}


def register_source(name: str) -> Callable[[DataLoaderFn], DataLoaderFn]:
    """Register ``loader(tasks: list[TaskSpec], **options) -> MultiTaskData`` under ``name``."""

    def decorator(fn: DataLoaderFn) -> DataLoaderFn:
        _SOURCES[name] = fn
        return fn

    return decorator


def available_sources() -> list[str]:
    return sorted(_SOURCES)


def load_data(source: str, tasks: list[TaskSpec], **options: Any) -> MultiTaskData:
    try:
        fn = _SOURCES[source]
    except KeyError:
        raise ValueError(f"Unknown data source {source!r}; known sources: {', '.join(available_sources())}.") from None
    return fn(tasks, **options)
