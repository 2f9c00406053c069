"""Feeding a split to a model: held on the device as tensors, or streamed from host memory.

``tensors``: the split is moved to the trial's device once and batches are gathered
by index there (no DataLoader, no worker processes, no host synchronisation inside
an epoch) -- right for data that fits comfortably. ``stream``: the uint8 images stay
in host memory (or the memory-mapped decode cache) and a DataLoader with worker
processes gathers each batch, pinned, copied asynchronously -- for data that does
not. ``auto`` picks ``tensors`` when the decoded dataset fits the memory budget.

Both paths draw the same batches in the same order from the same generator, and
apply the same augmentations on the device, so the choice changes speed, not results.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ._augment import Pipeline, build_augmentations
from ._tensors import MultiTaskData, Split

LOADER_MODES = ("auto", "tensors", "stream")
GPU_BUDGET_FRACTION = 0.25  # of the trial's share of the GPU's memory; the rest is the model's
HOST_BUDGET_FRACTION = 0.5  # of the machine's RAM, for CPU trials

Batch = tuple[Tensor, dict[str, Tensor]]


def memory_budget(device: torch.device, gpu_share: float = 1.0) -> int:
    """Bytes of decoded data a trial may hold on ``device`` by default."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return int(total * GPU_BUDGET_FRACTION * min(max(gpu_share, 0.0), 1.0) or total * GPU_BUDGET_FRACTION)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * HOST_BUDGET_FRACTION)


def resolve_loader(
    nbytes: int, device: torch.device, mode: str = "auto", memory_budget_mb: float | None = None, gpu_share: float = 1.0
) -> str:
    """``tensors`` or ``stream``: ``mode`` itself unless ``auto``; then by ``nbytes`` vs the budget."""
    if mode not in LOADER_MODES:
        raise ValueError(f"Unknown loader {mode!r}; allowed: {', '.join(LOADER_MODES)}.")
    if mode != "auto":
        return mode
    budget = memory_budget_mb * 2**20 if memory_budget_mb is not None else memory_budget(device, gpu_share)
    return "tensors" if nbytes <= budget else "stream"


class _Rows(Dataset):
    """Rows of a host-memory split, fetched a whole batch (an index tensor) at a time."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.split.images[index], {k: v[index] for k, v in self.split.targets.items()}


class _BatchOrder:
    """The sampler of the streaming DataLoader: this epoch's index batches, set before each pass."""

    def __init__(self) -> None:
        self.batches: list[Tensor] = []

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _order(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None) -> list[Tensor]:
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return list(order.split(batch_size))


class DataFeed:
    """Serves one split's batches to a model on ``device``, as tensors or streamed (see module doc)."""

    def __init__(
        self,
        split: Split,
        device: torch.device | str,
        mode: str = "tensors",
        num_workers: int = 0,
        augment: Pipeline | Sequence[dict[str, Any]] | None = None,
    ) -> None:
        if mode not in ("tensors", "stream"):
            raise ValueError(f"DataFeed mode must be 'tensors' or 'stream' (resolve 'auto' first), got {mode!r}.")
        self.device = torch.device(device)
        self.mode = mode
        self.augment = augment if isinstance(augment, Pipeline) else build_augmentations(augment)
        self.num_workers = int(num_workers)
        self.split = split.to(self.device) if mode == "tensors" else split.to("cpu")
        self._loader: DataLoader | None = None
        self._sampler = _BatchOrder()

    def __len__(self) -> int:
        return len(self.split)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        augment: bool = False,
    ) -> Iterator[Batch]:
        """``(x, targets)`` on the device: ``x`` ``(B, C, H, W)`` floats in [0, 1].

        ``shuffle`` draws the order from ``generator`` (CPU); ``augment`` applies the
        feed's augmentations, drawing from the same generator.
        """
        chunks = _order(len(self.split), batch_size, shuffle, generator)
        for x, targets in self._stream(chunks) if self.mode == "stream" else self._gather(chunks):
            if augment and self.augment:
                x, targets = self.augment(x, targets, generator or torch.default_generator)
            yield x, targets

    def _gather(self, chunks: list[Tensor]) -> Iterator[Batch]:
        for index in chunks:
            yield self.split.batch(index.to(self.device, non_blocking=True))

    def _stream(self, chunks: list[Tensor]) -> Iterator[Batch]:
        if self._loader is None:
            workers = self.num_workers
            self._loader = DataLoader(
                _Rows(self.split),
                batch_size=None,
                sampler=self._sampler,
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0,
                prefetch_factor=4 if workers > 0 else None,
            )
        self._sampler.batches = chunks
        for images, targets in self._loader:
            x = images.to(self.device, non_blocking=True).float().div_(255.0)
            yield x, {k: v.to(self.device, non_blocking=True) for k, v in targets.items()}


def iterate_batches(
    split: Split | DataFeed,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Iterator[Batch]:
    """One pass over ``split`` in batches on ``device`` (default: where the split is).

    A :class:`DataFeed` serves its own batches; a plain :class:`Split` is gathered
    where it lies and each batch moved to ``device``.
    """
    if isinstance(split, DataFeed):
        yield from split.batches(batch_size, shuffle, generator)
        return
    for index in _order(len(split), batch_size, shuffle, generator):
        x, targets = split.batch(index.to(split.images.device))
        if device is not None:
            x, targets = x.to(device), {k: v.to(device) for k, v in targets.items()}
        yield x, targets


def make_feeds(
    data: MultiTaskData, tasks: Sequence[str], device: torch.device | str, loader: dict[str, Any] | None = None
) -> dict[str, DataFeed]:
    """One feed per split of ``data`` (only ``tasks``' targets), as the experiment's ``loader`` says.

    ``loader``: ``mode`` (auto/tensors/stream), ``num_workers``, ``memory_budget_mb``,
    ``gpu_share`` (the trial's fraction of a GPU) and ``augment`` (the training
    split's augmentations). ``auto`` is decided once for the whole dataset.
    """
    loader = dict(loader or {})
    device = torch.device(device)
    splits = {name: split.select(list(tasks)) for name, split in data.splits.items()}
    nbytes = sum(split.nbytes for split in splits.values())
    mode = resolve_loader(nbytes, device, loader.get("mode", "auto"), loader.get("memory_budget_mb"), loader.get("gpu_share", 1.0))
    workers = int(loader.get("num_workers") or 0)
    augment = build_augmentations(loader.get("augment"))
    return {
        name: DataFeed(split, device, mode, workers, augment if name == "train" else None)
        for name, split in splits.items()
    }


HOST_SHARE_FRACTION = 0.2  # of the driver's RAM: beyond it, images stay in the decode cache


def prepare_for_trials(data: MultiTaskData, mode: str = "auto", memory_budget_mb: float | None = None) -> MultiTaskData:
    """Decide, once in the driver, how the images reach the trials.

    Images memory-mapped from the decode cache are read into memory (and so shipped
    once per node through Ray's object store, shared by that node's trials) for
    ``tensors``, and for ``auto`` when they fit the budget (``memory_budget_mb``, else
    a fifth of this machine's RAM). Otherwise, and for ``stream``, they stay in the
    cache file, which each trial memory-maps: the cache must then be on storage every
    node can read.
    """
    if not any(split.images_file for split in data.splits.values()) or mode == "stream":
        return data
    budget = (
        memory_budget_mb * 2**20
        if memory_budget_mb is not None
        else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * HOST_SHARE_FRACTION
    )
    return data.materialize() if mode == "tensors" or data.nbytes <= budget else data
