"""A 4-task dataset a user could have: real handwritten digits as PNG files plus a CSV.

Built from scikit-learn's 1,797 8x8 digits (shipped with the package, no download):

- ``digit``  classification, 10 classes;
- ``parity`` classification, 2 classes (even / odd);
- ``loops``  classification, 3 classes: closed loops in the glyph (1, 2, 3, 5, 7: 0;
  0, 4, 6, 9: 1; 8: 2), with about 10 % of the labels missing (``-1``);
- ``ink``    regression: the fraction of ink in the image (mean intensity in [0, 1]).

``write_digits4(root)`` writes ``root/img/*.png`` and ``root/labels.csv`` (header
``path,digit,parity,loops,ink``) and returns the CSV's path; ``experiment(root)`` is a
matching experiment dict (``source: files``, 60/25/15 split stratified by digit).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

LOOPS = {0: 1, 1: 0, 2: 0, 3: 0, 4: 1, 5: 0, 6: 1, 7: 0, 8: 2, 9: 1}
TASKS = [
    {"name": "digit", "kind": "classification", "classes": 10},
    {"name": "parity", "kind": "classification", "classes": 2},
    {"name": "loops", "kind": "classification", "classes": 3},
    {"name": "ink", "kind": "regression", "classes": 1},
]


def write_digits4(root: str | Path, missing: float = 0.1, seed: int = 0) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(root)
    csv = root / "labels.csv"
    if csv.is_file():
        return csv
    (root / "img").mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rng = np.random.default_rng(seed)
    lines = ["path,digit,parity,loops,ink"]
    for i, (image, digit) in enumerate(zip(digits.images, digits.target)):
        pixels = (image / 16.0 * 255).round().astype(np.uint8)
        name = f"img/{i:04d}.png"
        Image.fromarray(pixels, mode="L").save(root / name)
        loops = -1 if rng.random() < missing else LOOPS[int(digit)]
        lines.append(f"{name},{digit},{digit % 2},{loops},{pixels.mean() / 255:.5f}")
    tmp = csv.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(csv)
    return csv


def experiment(root: str | Path, **sections: Any) -> dict[str, Any]:
    """The dataset as an experiment (the sections in ``sections`` replace the defaults)."""
    csv = write_digits4(root)
    base = {
        "name": "digits4",
        "seed": 0,
        "data": {
            "source": "files",
            "file": str(csv),
            "split": {"train": 0.6, "val": 0.25, "test": 0.15, "seed": 0, "stratify": "digit"},
            "image_size": [16, 16],
            "channels": 1,
        },
        "tasks": TASKS,
        "backbone": {"name": "small_cnn", "options": {"widths": [16, 32, 32, 32]}},
        "train": {"epochs": 10, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "device": "cpu"},
    }
    return {**base, **sections}
