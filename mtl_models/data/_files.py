"""The seed's data files: one table per split, ``path, label_task1, label_task2, ...``.

Images are decoded with torchvision and resized to ``image_size``. A missing label is
``-1`` or empty for classification and empty or ``nan`` for regression; it is
ignored by that task only. Paths are relative to the data file unless absolute.
"""
from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import resize

from ..tasks import TaskSpec
from ._tensors import MultiTaskData, Split, register_source


class DataFileError(ValueError):
    """A problem in a data file, located by file, line and column."""

    def __init__(self, path: Path | str, line: int | None, column: str | None, message: str) -> None:
        where = str(path) + (f", line {line}" if line is not None else "") + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.column = str(path), line, column


def _parse_label(spec: TaskSpec, text: str, path: Path, line: int) -> float | int:
    text = text.strip()
    if spec.kind == "classification":
        if text in ("", "-1"):
            return -1
        try:
            value = int(text)
        except ValueError:
            raise DataFileError(path, line, spec.name, f"label {text!r} is not an integer class index.") from None
        if not 0 <= value < int(spec.classes):
            raise DataFileError(
                path, line, spec.name, f"label {value} is out of range; allowed: 0..{int(spec.classes) - 1} or -1 for missing."
            )
        return value
    if text == "" or text.lower() == "nan":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise DataFileError(path, line, spec.name, f"value {text!r} is not a number (empty or nan for missing).") from None


def read_data_file(path: Path, tasks: list[TaskSpec]) -> tuple[list[tuple[int, Path]], dict[str, list]]:
    """Rows of one data file: ``(line, image path)`` and each task's labels, validated."""
    if not path.is_file():
        raise DataFileError(path, None, None, "data file does not exist.")
    with path.open(newline="") as f:
        rows = [(i + 1, row) for i, row in enumerate(csv.reader(f)) if row and any(c.strip() for c in row)]
    if not rows:
        raise DataFileError(path, None, None, "data file has no rows.")
    task_names = [t.name for t in tasks]
    first_line, first = rows[0]
    header = [c.strip() for c in first]
    if header[0].lower() == "path" or set(header[1:]) & set(task_names):
        unknown = [c for c in header[1:] if c not in task_names]
        missing = [t for t in task_names if t not in header[1:]]
        if unknown or missing:
            raise DataFileError(
                path, first_line, None,
                f"header columns {header[1:]} must name the experiment's tasks {task_names}"
                + (f"; unknown: {unknown}" if unknown else "") + (f"; missing: {missing}" if missing else "") + ".",
            )
        columns = {t: header.index(t) for t in task_names}
        rows = rows[1:]
    else:
        columns = {t: i + 1 for i, t in enumerate(task_names)}
    width = max(columns.values()) + 1
    paths: list[tuple[int, Path]] = []
    labels: dict[str, list] = {t: [] for t in task_names}
    for line, row in rows:
        if len(row) != width:
            raise DataFileError(path, line, None, f"expected {width} columns (path + {len(task_names)} tasks), got {len(row)}.")
        image = Path(row[0].strip())
        paths.append((line, image if image.is_absolute() else path.parent / image))
        for spec in tasks:
            labels[spec.name].append(_parse_label(spec, row[columns[spec.name]], path, line))
    return paths, labels


def _decode(path: Path, channels: int, size: Sequence[int], data_file: Path, line: int) -> torch.Tensor:
    if not path.is_file():
        raise DataFileError(data_file, line, "path", f"image {str(path)!r} does not exist.")
    try:
        data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for TorchCodec's
            warnings.simplefilter("ignore", DeprecationWarning)
            image = decode_image(data, mode=ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB)
    except (RuntimeError, ValueError) as exc:
        raise DataFileError(data_file, line, "path", f"image {str(path)!r} could not be decoded ({exc}).") from None
    return resize(image, list(size), antialias=True)


def load_split(path: Path, tasks: list[TaskSpec], channels: int, image_size: Sequence[int]) -> Split:
    paths, labels = read_data_file(path, tasks)
    images = torch.stack([_decode(p, channels, image_size, path, line) for line, p in paths])
    targets = {
        t.name: torch.tensor(labels[t.name], dtype=t.kind_impl.target_dtype) for t in tasks
    }
    return Split(images, targets)


@register_source("files")
def files(
    tasks: list[TaskSpec],
    train: str | Path,
    val: str | Path,
    test: str | Path | None = None,
    image_size: Sequence[int] = (64, 64),
    channels: int = 3,
) -> MultiTaskData:
    """One data file per split (``train``, ``val``, optional ``test``)."""
    splits = {
        name: load_split(Path(p), tasks, channels, image_size)
        for name, p in (("train", train), ("val", val), ("test", test))
        if p is not None
    }
    return MultiTaskData(tasks, splits, description=f"data files {train}, {val}, {test}")
