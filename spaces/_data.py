"""The ``data`` section of the experiment: one model per source, plus how trials are fed.

Every source shares the loader options (``loader``, ``num_workers``,
``memory_budget_mb``, ``augment``) and says which tasks it has
(``check_tasks``) and which augmentations would change a task's meaning
(``task_effects``), so the experiment is refused before any data is read.

The built-in sources have their own models (with cross-field checks); any other
registered source is validated from its loader's signature (``_sources``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mtl_models import TaskSpec
from mtl_models.data import (
    CELEBA_ATTRIBUTES,
    MAX_IMAGE_PIXELS,
    augmentation_class,
    augmentation_options,
    available_augmentations,
    celeba_task_map,
    check_scene_tasks,
)

from ._common import _registered, _resolve, _Strict

DENSE_KINDS = ("segmentation", "dense_regression")


class AugmentConfig(BaseModel):
    """One augmentation by ``name``; other keys are its options. ``safe_for`` lists tasks
    whose labels the user vouches this augmentation leaves valid despite the check."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    safe_for: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _registered("augmentation", v, available_augmentations())

    @model_validator(mode="after")
    def _options(self) -> "AugmentConfig":
        allowed = augmentation_options(self.name)
        unknown = sorted(set(self.model_extra or {}) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for augmentation {self.name!r}; allowed: {', '.join(allowed) or 'none'}, safe_for"
            )
        augmentation_class(self.name)(**(self.model_extra or {}))  # its own range checks
        return self

    @property
    def effect(self) -> str:
        return augmentation_class(self.name).effect

    def plain(self) -> dict[str, Any]:
        return {"name": self.name, **(self.model_extra or {})}


class _DataBase(_Strict):
    """What every source shares: how trials are fed and which augmentations they get."""

    loader: Literal["auto", "tensors", "stream"] = "auto"
    num_workers: NonNegativeInt | None = None
    memory_budget_mb: PositiveFloat | None = None
    augment: list[AugmentConfig] = Field(default_factory=list)

    _LOADER_FIELDS = ("source", "loader", "num_workers", "memory_budget_mb", "augment")

    def source_options(self) -> dict[str, Any]:
        """The keyword arguments of the source's loader (``mtl_models.load_data``)."""
        return self.model_dump(exclude=set(self._LOADER_FIELDS))

    def loader_config(self, cpus: float = 1.0) -> dict[str, Any]:
        """The trial config's ``loader`` entry; ``num_workers`` defaults to the trial's CPUs - 1 (at most 4)."""
        workers = self.num_workers if self.num_workers is not None else max(0, min(4, int(cpus) - 1))
        return {
            "mode": self.loader,
            "num_workers": workers,
            "memory_budget_mb": self.memory_budget_mb,
            "augment": [a.plain() for a in self.augment],
        }

    def channels_in(self) -> int:
        return int(getattr(self, "channels", 3))

    def input_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of the images the models see; None where the source does not say."""
        size = getattr(self, "image_size")
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        """``(task index or None, message)`` per task the source cannot provide."""
        return []

    def train_rows(self) -> int | None:
        """How many training rows the source gives, where that is known without loading it
        (``n_train``); None where it is not."""
        n = getattr(self, "n_train", None)
        return int(n) if n is not None else None

    def task_effects(self, spec: TaskSpec) -> dict[str, str] | None:
        """Augmentation effects that change ``spec``'s labels, with why; ``None``: the source does not know."""
        return None


def default_task_effects(spec: TaskSpec) -> dict[str, str]:
    """Without the source's knowledge: an image-level regression value may be a coordinate."""
    if spec.kind == "regression":
        why = "a regressed value may be a coordinate or a left/right quantity"
        return {"mirror": why, "shift": why}
    return {}


class MultiMNISTData(_DataBase):
    """The built-in MultiMNIST of real digits (tasks ``left`` and ``right``)."""

    source: Literal["multimnist"]
    n_train: PositiveInt = 6000
    n_val: PositiveInt = 1000
    n_test: NonNegativeInt = 1000
    canvas: int = Field(36, ge=28, le=56)
    seed: int | None = None
    missing_rate: dict[str, Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(default_factory=dict)

    def channels_in(self) -> int:
        return 1

    def input_size(self) -> tuple[int, int]:
        return self.canvas, self.canvas

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        names = [t.name for t in tasks]
        unknown = sorted(set(names) - {"left", "right"})
        if unknown:
            return [(None, f"multimnist has tasks ['left', 'right']; unknown task name(s): {unknown}")]
        return _missing_rate_problems(self.missing_rate, names)

    def task_effects(self, spec: TaskSpec) -> dict[str, str] | None:
        return {"mirror": "the task is the digit in one corner of the image; a mirror moves it to another"}


def _missing_rate_problems(rates: dict[str, float], names: list[str]) -> list[tuple[int | None, str]]:
    unknown = sorted(set(rates) - set(names))
    return [(None, f"data.missing_rate: unknown task name(s) {unknown}; allowed: {names}")] if unknown else []


class SplitConfig(_Strict):
    """Fractions of one data file per split, the shuffling seed and an optional stratifying task."""

    train: Annotated[float, Field(gt=0.0, le=1.0)]
    val: Annotated[float, Field(gt=0.0, lt=1.0)]
    test: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    seed: int | None = None
    stratify: str | None = None

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitConfig":
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"train + val + test must be 1, got {self.train} + {self.val} + {self.test} = {total:g}")
        return self


class FilesData(_DataBase):
    """The seed's data files (``path, label_task1, ...``): one per split, or one file and a ``split``."""

    source: Literal["files"]
    train: Path | None = None
    val: Path | None = None
    test: Path | None = None
    file: Path | None = None
    split: SplitConfig | None = None
    image_size: tuple[PositiveInt, PositiveInt] = (64, 64)
    channels: Literal[1, 3] = 3
    delimiter: Literal["auto", "comma", "tab", "whitespace"] = "auto"
    header: Union[Literal["auto"], bool] = "auto"
    ignore_columns: list[str] = Field(default_factory=list)
    cache: bool = True
    cache_dir: Path | None = None
    max_image_pixels: PositiveInt = MAX_IMAGE_PIXELS

    @field_validator("train", "val", "test", "file")
    @classmethod
    def _file_exists(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        v = _resolve(v, info)
        try:
            exists = v is None or v.is_file()
        except OSError as exc:  # a name too long for the file system, ...
            raise ValueError(f"data file {str(v)[:200]!r} cannot be read ({exc.strerror})") from None
        if not exists:
            raise ValueError(f"data file {str(v)!r} does not exist")
        return v

    @field_validator("cache_dir")
    @classmethod
    def _resolve_dir(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(v, info)

    @model_validator(mode="after")
    def _one_layout(self) -> "FilesData":
        if self.file is not None:
            if self.train or self.val or self.test:
                raise ValueError("data: give either file + split or train/val[/test] files, not both")
            if self.split is None:
                raise ValueError("data.split: one data file needs split fractions, e.g. {train: 0.6, val: 0.25, test: 0.15}")
        elif self.train is None or self.val is None:
            raise ValueError("data: give train and val files (test optional), or one file with split fractions")
        elif self.split is not None:
            raise ValueError("data.split: only used with data.file (one file to split)")
        return self

    def train_rows(self) -> int | None:
        """The training file's lines (less a header line), or the one file's times its train
        fraction: a count of newlines, not a parse (an estimate for sizing, never for training)."""
        path = self.train or self.file
        try:
            with open(path, "rb") as handle:
                lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        except OSError:
            return None
        rows = max(lines - 1, 0)
        return int(rows * self.split.train) if self.file is not None and self.split is not None else rows

    def source_options(self) -> dict[str, Any]:
        options = super().source_options()
        for key in ("train", "val", "test", "file", "cache_dir"):
            if options[key] is not None:
                options[key] = str(options[key])
        return options

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        stratify = self.split.stratify if self.split else None
        if stratify is None:
            return []
        by_name = {t.name: t for t in tasks}
        if stratify not in by_name:
            return [(None, f"data.split.stratify: {stratify!r} is not a task; allowed: {list(by_name)}")]
        if by_name[stratify].kind != "classification":
            return [(None, f"data.split.stratify: task {stratify!r} is {by_name[stratify].kind}; stratify by a classification task")]
        return []


class ScenesData(_DataBase):
    """Procedural multi-attribute scenes (``mtl_models.data._scenes``): any size, no download."""

    source: Literal["scenes"]
    n_train: PositiveInt = 8000
    n_val: PositiveInt = 1000
    n_test: NonNegativeInt = 1000
    image_size: Union[PositiveInt, tuple[PositiveInt, PositiveInt]] = 64
    max_objects: int = Field(3, ge=1, le=6)
    noise: NonNegativeFloat = 0.04
    seed: int | None = None
    missing_rate: dict[str, Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(default_factory=dict)

    @field_validator("image_size")
    @classmethod
    def _large_enough(cls, v: int | tuple[int, int]) -> int | tuple[int, int]:
        if min((v, v) if isinstance(v, int) else v) < 8:
            raise ValueError(f"scenes images need at least 8 pixels a side, got {v}")
        return v

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        out = []
        for i, spec in enumerate(tasks):
            out += [(i, msg) for msg in check_scene_tasks([spec], self.max_objects)]
        return out + _missing_rate_problems(self.missing_rate, [t.name for t in tasks])

    def task_effects(self, spec: TaskSpec) -> dict[str, str] | None:
        return {
            "position": {"mirror": "it is the main object's (x, y)", "shift": "it is the main object's (x, y)"},
            "colour": {"intensity": "it is the main object's colour"},
        }.get(spec.name, {})


class CelebAData(_DataBase):
    """A local CelebA copy in torchvision's layout: attributes and/or landmarks as tasks."""

    source: Literal["celeba"]
    root: Path
    n_train: NonNegativeInt | None = None
    n_val: NonNegativeInt | None = None
    n_test: NonNegativeInt | None = None
    image_size: tuple[PositiveInt, PositiveInt] = (64, 64)
    channels: Literal[1, 3] = 3
    attributes: dict[str, str] = Field(default_factory=dict)
    landmarks_task: str = "landmarks"
    cache: bool = True
    cache_dir: Path | None = None
    max_image_pixels: PositiveInt = MAX_IMAGE_PIXELS

    @field_validator("root")
    @classmethod
    def _folder_exists(cls, v: Path, info: ValidationInfo) -> Path:
        v = _resolve(v, info)
        try:
            exists = v.is_dir()
        except OSError as exc:
            raise ValueError(f"CelebA folder {str(v)[:200]!r} cannot be read ({exc.strerror})") from None
        if not exists:
            raise ValueError(f"CelebA folder {str(v)!r} does not exist")
        return v

    @field_validator("cache_dir")
    @classmethod
    def _resolve_dir(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve(v, info)

    @field_validator("attributes")
    @classmethod
    def _known_attributes(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(a for a in v.values() if a not in CELEBA_ATTRIBUTES)
        if bad:
            raise ValueError(f"unknown CelebA attribute(s) {bad}; allowed: {', '.join(CELEBA_ATTRIBUTES)}")
        return v

    def source_options(self) -> dict[str, Any]:
        options = super().source_options()
        options["root"] = str(options["root"])
        options["cache_dir"] = str(options["cache_dir"]) if options["cache_dir"] else None
        return options

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        out = []
        for i, spec in enumerate(tasks):
            out += [(i, msg) for msg in celeba_task_map([spec], self.attributes, self.landmarks_task)[1]]
        return out

    def task_effects(self, spec: TaskSpec) -> dict[str, str] | None:
        if spec.name == self.landmarks_task:
            return {
                "mirror": "a mirror moves every x and swaps the left and right eye and mouth corner",
                "shift": "the points move with the image",
            }
        return {}


def augment_problems(data: _DataBase, tasks: list[TaskSpec]) -> list[str]:
    """One ``data.augment[i]: ...`` message per augmentation that would change a task's labels."""
    names = [t.name for t in tasks]
    out = []
    for i, aug in enumerate(data.augment):
        unknown = sorted(set(aug.safe_for) - set(names))
        if unknown:
            out.append(f"data.augment[{i}].safe_for: unknown task(s) {unknown}; allowed: {names}")
            continue
        for spec in tasks:
            if spec.kind in DENSE_KINDS or spec.name in aug.safe_for:
                continue  # dense targets are transformed with the image
            effects = data.task_effects(spec)
            effects = default_task_effects(spec) if effects is None else effects
            if aug.effect in effects:
                out.append(
                    f"data.augment[{i}]: {aug.name} would change the labels of task {spec.name!r} "
                    f"({effects[aug.effect]}); remove it, or list the task in safe_for if its labels do not change"
                )
    return out

