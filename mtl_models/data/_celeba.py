"""A local copy of CelebA as a multi-task dataset: attributes and/or landmarks, no download.

The folder is torchvision's layout (``torchvision.datasets.CelebA(root, download=False)``):
``root/celeba/`` (or ``root`` itself) holding ``list_eval_partition.txt``,
``list_attr_celeba.txt``, ``list_landmarks_align_celeba.txt`` and the aligned images in
``img_align_celeba/``. The files are read here with the same parsing rules as
torchvision (space separated, a count line and a header line before the attribute
and landmark rows; attributes -1/1 mapped to 0/1), because torchvision's class also
insists on ``identity_CelebA.txt`` and ``list_bbox_celeba.txt`` and on every file's
MD5 checksum, which a partial copy, a subset or a test fixture cannot satisfy; and
because reading them here lets every bad row be reported with its file and line.

Tasks: each attribute the experiment names is one task, of kind ``binary`` or a 2-class
``classification`` (``attribute_target`` is the one place that maps the -1/1 values),
and ``landmarks`` is a 10-value regression task (five (x, y) points of the aligned
178x218 images, divided by the width and height, so in [0, 1] at any ``image_size``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

import numpy as np
import torch
from annotated_types import Ge, Gt
from torch import Tensor

from .._registry import Check
from ..tasks import TaskSpec
from ._errors import DataFileError, ProblemLog
from ._images import MAX_IMAGE_PIXELS, ImageRef, decode_images, default_cache_dir
from ._source import SourceFacts, register_source
from ._tensors import MultiTaskData, Split, tensor_from_numpy

ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
LANDMARKS = ("lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
             "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y")
ALIGNED_SIZE = (178, 218)  # width, height of img_align_celeba images
PARTITIONS = {"train": 0, "val": 1, "test": 2}  # list_eval_partition.txt codes (torchvision: train/valid/test)
FILES = {
    "partition": "list_eval_partition.txt",
    "attr": "list_attr_celeba.txt",
    "landmarks": "list_landmarks_align_celeba.txt",
}
IMAGES = "img_align_celeba"
ATTRIBUTE_KINDS = ("classification", "binary")


def attribute_target(spec: TaskSpec, raw: np.ndarray) -> Tensor:
    """One attribute's CelebA values (-1/1) as ``spec``'s target; the only place that knows the kind.

    ``binary``: float ``(N,)`` 0/1. ``classification`` (2 classes): long ``(N,)`` 0/1.
    """
    return torch.from_numpy((raw + 1) // 2).to(spec.kind_impl.target_dtype)


def celeba_task_map(
    tasks: Sequence[TaskSpec], attributes: dict[str, str] | None = None, landmarks_task: str = "landmarks"
) -> tuple[dict[str, str], list[str]]:
    """``{task: attribute or 'landmarks'}`` and one message per task that does not fit.

    A task is the landmarks when named ``landmarks_task``; else the attribute that
    ``attributes`` maps it to; else the attribute with its name, case-insensitively
    (``smiling`` -> ``Smiling``).
    """
    by_lower = {a.lower(): a for a in ATTRIBUTES}
    mapping, problems = {}, []
    for spec in tasks:
        if spec.name == landmarks_task:
            mapping[spec.name] = "landmarks"
            if spec.kind != "regression" or (spec.classes or 1) != len(LANDMARKS):
                problems.append(f"CelebA task {spec.name!r} (the landmarks) must be kind regression with classes: 10")
            continue
        attribute = (attributes or {}).get(spec.name) or by_lower.get(spec.name.lower())
        if attribute not in ATTRIBUTES:
            what = f"attribute {attribute!r}" if attribute else f"task {spec.name!r}"
            problems.append(
                f"CelebA has no {what}; a task is an attribute ({', '.join(ATTRIBUTES)}) "
                f"or {landmarks_task!r} (map other names with data.attributes)"
            )
            continue
        mapping[spec.name] = attribute
        if spec.kind not in ATTRIBUTE_KINDS or (spec.kind == "classification" and spec.classes != 2):
            problems.append(f"CelebA attribute task {spec.name!r} must be kind binary (or classification with classes: 2)")
    return mapping, problems


def celeba_folder(root: Path) -> Path:
    """``root/celeba`` as torchvision lays it out, or ``root`` when the files are right there."""
    return root / "celeba" if (root / "celeba").is_dir() else root


def _read_table(path: Path, with_header: bool, width: int, problems: ProblemLog) -> tuple[list[str], dict[str, tuple[int, list[str]]]]:
    """``(header, {image: (line, values)})`` of one CelebA list file, every bad line reported."""
    if not path.is_file():
        problems.add(DataFileError(path, None, None, "CelebA file is missing (torchvision's layout: ROOT/celeba/<file>)."))
        return [], {}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header: list[str] = []
    start = 0
    if with_header:
        if len(lines) < 2:
            problems.add(DataFileError(path, None, None, "expected a count line and a header line before the rows."))
            return [], {}
        header, start = lines[1].split(), 2
        if len(header) != width:
            problems.add(DataFileError(path, 2, None, f"the header names {len(header)} columns; expected {width}."))
            return header, {}
    rows: dict[str, tuple[int, list[str]]] = {}
    for number, text in enumerate(lines[start:], start + 1):
        cells = text.split()
        if not cells:
            continue
        if len(cells) != width + 1:
            problems.add(DataFileError(path, number, None, f"expected {width + 1} columns (image + {width}), got {len(cells)}."))
            continue
        if cells[0] in rows:
            problems.add(DataFileError(path, number, 1, f"image {cells[0]!r} is listed twice (also line {rows[cells[0]][0]}).", "image"))
            continue
        rows[cells[0]] = (number, cells[1:])
    if with_header and lines[0].strip().isdigit() and int(lines[0]) != len(rows) and not problems:
        problems.add(DataFileError(path, 1, None, f"the count line says {int(lines[0])} rows, the file has {len(rows)}; truncated?"))
    return header, rows


def _ints(path: Path, line: int, values: list[str], names: Sequence[str], allowed: set[int] | None, problems: ProblemLog) -> list[int] | None:
    out = []
    for i, text in enumerate(values):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or (allowed is not None and value not in allowed):
            what = f"one of {sorted(allowed)}" if allowed else "an integer"
            problems.add(DataFileError(path, line, i + 2, f"value {text!r} is not {what}.", names[i]))
            return None
        out.append(value)
    return out


def _a_folder(root: Path) -> Path:
    try:
        exists = root.is_dir()
    except OSError as exc:
        raise ValueError(f"CelebA folder {str(root)[:200]!r} cannot be read ({exc.strerror})") from None
    if not exists:
        raise ValueError(f"CelebA folder {str(root)!r} does not exist")
    return root


def _known_attributes(attributes: dict[str, str]) -> dict[str, str]:
    bad = sorted(a for a in attributes.values() if a not in ATTRIBUTES)
    if bad:
        raise ValueError(f"unknown CelebA attribute(s) {bad}; allowed: {', '.join(ATTRIBUTES)}")
    return attributes


class CelebAFacts(SourceFacts):
    """Tasks are attributes (named or mapped by ``attributes``) and the landmarks."""

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        out: list[tuple[int | None, str]] = []
        for i, spec in enumerate(tasks):
            out += [(i, msg) for msg in celeba_task_map([spec], self.attributes, self.landmarks_task)[1]]
        return out

    def task_effects(self, spec: TaskSpec) -> dict[str, str]:
        if spec.name == self.landmarks_task:
            return {
                "mirror": "a mirror moves every x and swaps the left and right eye and mouth corner",
                "shift": "the points move with the image",
            }
        return {}


@register_source("celeba", facts=CelebAFacts)
def celeba(
    tasks: list[TaskSpec],
    root: Annotated[Path, Check(_a_folder)],
    n_train: Annotated[int, Ge(0)] | None = None,
    n_val: Annotated[int, Ge(0)] | None = None,
    n_test: Annotated[int, Ge(0)] | None = None,
    image_size: tuple[Annotated[int, Gt(0)], Annotated[int, Gt(0)]] = (64, 64),
    channels: Literal[1, 3] = 3,
    attributes: Annotated[dict[str, str], Check(_known_attributes)] | None = None,
    landmarks_task: str = "landmarks",
    cache: bool = True,
    cache_dir: Path | None = None,
    max_image_pixels: Annotated[int, Gt(0)] = MAX_IMAGE_PIXELS,
) -> MultiTaskData:
    """CelebA's official train/valid/test partition (the first ``n_*`` images of each, if given).

    Raises :class:`DataErrors` naming every bad file and line.
    """
    mapping, bad_tasks = celeba_task_map(tasks, attributes, landmarks_task)
    if bad_tasks:
        raise ValueError("celeba: " + "; ".join(bad_tasks) + ".")
    folder = celeba_folder(Path(root))
    problems = ProblemLog()
    _, partition = _read_table(folder / FILES["partition"], False, 1, problems)
    wanted_attr = sorted({a for a in mapping.values() if a != "landmarks"})
    attr_header, attr_rows = _read_table(folder / FILES["attr"], True, len(ATTRIBUTES), problems) if wanted_attr else ([], {})
    lm_rows: dict[str, tuple[int, list[str]]] = {}
    if "landmarks" in mapping.values():
        _, lm_rows = _read_table(folder / FILES["landmarks"], True, len(LANDMARKS), problems)
    problems.raise_if_any()
    unknown = [a for a in wanted_attr if a not in attr_header]
    if unknown:
        problems.add(DataFileError(folder / FILES["attr"], 2, None, f"the header has no attribute {unknown}."))
        problems.raise_if_any()
    columns = [attr_header.index(a) for a in wanted_attr]
    limits = {"train": n_train, "val": n_val, "test": n_test}
    chosen: dict[str, list[str]] = {name: [] for name in PARTITIONS}
    codes = {str(code): name for name, code in PARTITIONS.items()}
    part_path = folder / FILES["partition"]
    for image, (line, (code,)) in partition.items():
        name = codes.get(code)
        if name is None:
            problems.add(DataFileError(part_path, line, 2, f"partition {code!r} is not one of 0 (train), 1 (valid), 2 (test).", "partition"))
        elif limits[name] is None or len(chosen[name]) < limits[name]:
            chosen[name].append(image)
    splits_raw: dict[str, dict[str, Any]] = {}
    for name, images in chosen.items():
        if not images or limits[name] == 0:
            continue
        attr_values, lm_values, refs = [], [], []
        for image in images:
            refs.append(ImageRef(folder / IMAGES / image, part_path, partition[image][0], 1, "image"))
            if wanted_attr:
                if image not in attr_rows:
                    problems.add(DataFileError(folder / FILES["attr"], None, None, f"image {image!r} (in the partition) has no attribute row."))
                    continue
                line, values = attr_rows[image]
                row = _ints(folder / FILES["attr"], line, values, attr_header, {-1, 1}, problems)
                attr_values.append([row[c] for c in columns] if row else [1] * len(columns))
            if lm_rows:
                if image not in lm_rows:
                    problems.add(DataFileError(folder / FILES["landmarks"], None, None, f"image {image!r} (in the partition) has no landmarks row."))
                    continue
                line, values = lm_rows[image]
                row = _ints(folder / FILES["landmarks"], line, values, LANDMARKS, None, problems)
                lm_values.append(row or [0] * len(LANDMARKS))
        splits_raw[name] = {"refs": refs, "attr": np.array(attr_values, dtype=np.int64), "landmarks": np.array(lm_values, dtype=np.float32)}
    for required in ("train", "val"):
        if required not in splits_raw:
            problems.add(DataFileError(part_path, None, None, f"no images in the {required} partition ({PARTITIONS[required]})."))
    size = tuple(int(s) for s in image_size)
    if problems:
        decode_images([r for s in splits_raw.values() for r in s["refs"]], channels, size, problems, validate_only=True, max_pixels=max_image_pixels)
        problems.raise_if_any()
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    arrays = {name: decode_images(s["refs"], channels, size, problems, cache_dir=directory if cache else None, max_pixels=max_image_pixels) for name, s in splits_raw.items()}
    problems.raise_if_any()
    scale = np.array(ALIGNED_SIZE * (len(LANDMARKS) // 2), dtype=np.float32)
    splits = {}
    for name, raw in splits_raw.items():
        targets = {}
        for spec in tasks:
            if mapping[spec.name] == "landmarks":
                targets[spec.name] = torch.from_numpy(raw["landmarks"] / scale)
            else:
                targets[spec.name] = attribute_target(spec, raw["attr"][:, wanted_attr.index(mapping[spec.name])])
        array = arrays[name]
        images_file = getattr(array, "filename", None)
        splits[name] = Split(tensor_from_numpy(array), targets, str(images_file) if images_file else None)
    return MultiTaskData(tasks, splits, description=f"CelebA at {folder}", extra={"task_map": mapping})
