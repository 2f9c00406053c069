"""Multi-task datasets held as tensors: uint8 images and one target tensor per task."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..tasks import TaskSpec

# input_spec computes mean/std exactly over the train split up to this many values,
# and over an evenly spaced sample of images beyond it (a large split never leaves disk whole)
_EXACT_STATS_VALUES = 64 * 2**20
_STATS_SAMPLE_IMAGES = 4096


def tensor_from_numpy(array: np.ndarray) -> Tensor:
    """``torch.from_numpy`` that accepts read-only arrays (memory maps, Ray's shared memory).

    Nothing writes into image tensors (batches are float copies), so sharing the
    read-only memory is safe and saves a copy per trial.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def open_images_file(path: str | Path) -> Tensor:
    """The ``(N, C, H, W)`` uint8 images of a decoded-image cache file, memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Decoded-image cache {str(path)!r} is not on this node. Put data.cache_dir on storage every "
            "node can read, or set data.loader: tensors so the images travel in Ray's object store."
        )
    return tensor_from_numpy(np.load(path, mmap_mode="r"))


@dataclass
class Split:
    """One split: ``images`` ``(N, C, H, W)`` uint8 and ``targets[task]`` ``(N, ...)``.

    Missing labels are stored as the task kind's missing value (-1 for classes, NaN
    for regression) and skipped by that task's loss and metric only.

    ``images_file`` names the decoded-image cache file the images are memory-mapped
    from, if any: such a split pickles as that path (Ray ships a few bytes, each
    trial maps the file), any other pickles its images as a numpy array, which Ray's
    object store shares between the trials of a node without a copy.
    """

    images: Tensor
    targets: dict[str, Tensor]
    images_file: str | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        for name, t in self.targets.items():
            if t.shape[0] != n:
                raise ValueError(f"Task {name!r} has {t.shape[0]} targets for {n} images.")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.images_file is not None and self.images.device.type == "cpu":
            return _rebuild_split, (None, self.targets, self.images_file)
        return _rebuild_split, (self.images.cpu().numpy(), self.targets, None)

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded images and the targets."""
        return self.images.numel() * self.images.element_size() + sum(
            t.numel() * t.element_size() for t in self.targets.values()
        )

    def materialize(self) -> "Split":
        """This split with its images read into memory (no longer backed by a cache file)."""
        if self.images_file is None:
            return self
        return Split(self.images.clone(), self.targets)

    @staticmethod
    def concat(splits: "list[Split]") -> "Split":
        """The splits' rows one after another, in memory (e.g. train + val for a final fit)."""
        return Split(
            torch.cat([s.images for s in splits]),
            {name: torch.cat([s.targets[name] for s in splits]) for name in splits[0].targets},
        )

    def select(self, tasks: list[str]) -> "Split":
        """The same images with only ``tasks``' targets."""
        return Split(self.images, {k: v for k, v in self.targets.items() if k in tasks}, self.images_file)

    def to(self, device: torch.device | str) -> "Split":
        device = torch.device(device)
        images_file = self.images_file if device.type == "cpu" else None
        return Split(self.images.to(device), {k: v.to(device) for k, v in self.targets.items()}, images_file)

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
        """Channels, size and the train split's per-channel mean/std (in [0, 1] units).

        Exact over the whole split up to 64 Mi values; beyond that over 4,096 evenly
        spaced images, so a memory-mapped split is never read whole.
        """
        images = self.splits["train"].images
        channels, height, width = images.shape[1:]
        if images.numel() <= _EXACT_STATS_VALUES:
            flat = images.transpose(0, 1).reshape(channels, -1).float().div_(255.0)
            mean, std = flat.mean(dim=1), flat.std(dim=1)
        else:
            index = torch.linspace(0, len(images) - 1, _STATS_SAMPLE_IMAGES).round().long().unique()
            total = torch.zeros(channels, dtype=torch.float64)
            squares = torch.zeros(channels, dtype=torch.float64)
            for chunk in index.split(512):
                x = images[chunk].to(torch.float64).div_(255.0).transpose(0, 1).reshape(channels, -1)
                total += x.sum(dim=1)
                squares += (x * x).sum(dim=1)
            n = len(index) * height * width
            mean = total / n
            std = ((squares - n * mean * mean) / (n - 1)).clamp_min(0.0).sqrt()
        return {
            "channels": int(channels),
            "height": int(height),
            "width": int(width),
            "mean": [round(v, 6) for v in mean.tolist()],
            "std": [round(v, 6) for v in std.clamp_min(1e-3).tolist()],
        }

    @property
    def nbytes(self) -> int:
        """Bytes of every split's decoded images and targets (what holding it on a device costs)."""
        return sum(split.nbytes for split in self.splits.values())

    def materialize(self) -> "MultiTaskData":
        """The dataset with every split read into memory (see :meth:`Split.materialize`)."""
        splits = {name: split.materialize() for name, split in self.splits.items()}
        return MultiTaskData(self.tasks, splits, self.description, self.extra)

    def label_summary(self) -> dict[str, dict[str, Any]]:
        """Per split and task: rows, labelled rows, the missing-label rate and label statistics.

        A row counts as labelled when all its entries are (dense targets: any pixel).
        Class-index targets add ``counts`` (per class) and ``imbalance`` (largest over
        smallest class count; ``None`` when a class has no rows); float targets add
        ``mean``, ``std``, ``min`` and ``max`` of the labelled values (for binary and
        multilabel tasks the mean is the positive rate). Dense targets count pixels.
        """
        out: dict[str, dict[str, Any]] = {}
        for split_name, split in self.splits.items():
            for spec in self.tasks:
                target = split.targets[spec.name]
                valid = spec.kind_impl.valid_mask(target)
                if valid.dim() > 2:
                    rows = valid.flatten(1).any(dim=1)
                else:
                    rows = valid.flatten(1).all(dim=1) if valid.dim() > 1 else valid
                labelled = int(rows.sum())
                entry: dict[str, Any] = {
                    "rows": len(split),
                    "labelled": labelled,
                    "missing_rate": 1.0 - labelled / max(len(split), 1),
                }
                entry.update(_label_stats(spec, target, valid))
                out[f"{split_name}/{spec.name}"] = entry
        return out

    def warnings(self) -> list[str]:
        """Things worth a look that do not stop a run: empty classes, mostly-missing tasks, ...

        Sources add their own under ``extra['warnings']`` (e.g. images in two splits).
        """
        out = list(self.extra.get("warnings", []))
        for key, entry in self.label_summary().items():
            split_name, task = key.split("/", 1)
            if entry["rows"] and entry["missing_rate"] > 0.5:
                out.append(f"{key}: {entry['missing_rate']:.0%} of the rows have no label.")
            empty = [c for c, n in enumerate(entry.get("counts", [])) if n == 0]
            if split_name == "train" and empty:
                what = "pixels" if entry.get("unit") == "pixels" else "rows"
                counts = entry["counts"]
                if 2 * len(empty) > len(counts):  # most classes unseen: it can only learn the few it sees
                    out.append(
                        f"{key}: {len(empty)} of its {len(counts)} classes have no labelled train {what} "
                        f"(only {[c for c, n in enumerate(counts) if n]} have); it cannot learn the others."
                    )
                else:
                    out.append(f"{key}: class(es) {empty} have no labelled train {what}.")
        return out


def _rebuild_split(images: np.ndarray | None, targets: dict[str, Tensor], images_file: str | None) -> Split:
    tensor = open_images_file(images_file) if images_file is not None else tensor_from_numpy(images)
    return Split(tensor, targets, images_file)


def _label_stats(spec: TaskSpec, target: Tensor, valid: Tensor) -> dict[str, Any]:
    """Class counts (class-index targets) or value statistics (float targets) of the labelled
    entries; for dense targets these count pixels (``unit: pixels``)."""
    out: dict[str, Any] = {"unit": "pixels"} if target.dim() >= 3 else {}
    if not target.dtype.is_floating_point and spec.classes:
        counts = torch.bincount(target[valid].long().flatten(), minlength=int(spec.classes)).tolist()
        smallest = min(counts)
        return {**out, "counts": counts, "imbalance": max(counts) / smallest if smallest else None}
    if target.dtype.is_floating_point:
        values = target[valid].double()
        if values.numel() == 0:
            return {}
        return {
            **out,
            "mean": float(values.mean()),
            "std": float(values.std()) if values.numel() > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return {}


# the source registry moved to ``_source``; these names stay importable from here
from ._source import (  # noqa: E402
    _SOURCES,
    DataLoaderFn,
    available_sources,
    load_data,
    register_source,
    source_function,
    source_options,
)
