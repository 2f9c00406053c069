"""The ``data`` section of the experiment: one model per source, plus how trials are fed.

Every source shares the loader options (``loader``, ``num_workers``,
``memory_budget_mb``, ``augment``) and says which tasks it has
(``check_tasks``) and which augmentations would change a task's meaning
(``task_effects``), so the experiment is refused before any data is read.

The built-in sources have their own models (with cross-field checks); any other
source registered with ``mtl_models.register_source`` (by a plugin) is
:class:`RegisteredData`, whose options are its loader's keyword arguments, checked
against their names, defaults and type hints (the signature is the schema).
"""
from __future__ import annotations

import math
from pathlib import Path
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Tag,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from mtl_models import TaskSpec
from mtl_models.data import (
    CELEBA_ATTRIBUTES,
    augmentation_class,
    augmentation_options,
    available_augmentations,
    available_sources,
    celeba_task_map,
    check_scene_tasks,
    source_function,
    source_options,
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

    @field_validator("train", "val", "test", "file")
    @classmethod
    def _file_exists(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        v = _resolve(v, info)
        if v is not None and not v.is_file():
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

    @field_validator("root")
    @classmethod
    def _folder_exists(cls, v: Path, info: ValidationInfo) -> Path:
        v = _resolve(v, info)
        if not v.is_dir():
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


class RegisteredData(_DataBase):
    """A source registered with ``mtl_models.register_source`` (a plugin's): ``source`` names
    it, the other keys are its loader's keyword arguments.

    Options are checked against the loader's signature: unknown names (listing the allowed
    ones), values against the type hints, required arguments given. An option annotated
    as a ``Path`` is relative to the experiment file. A loader that takes ``seed`` and is
    not given one gets the experiment's. ``image_size`` and ``channels``, where the loader
    takes them, tell the backbone check the images' size before any data is read;
    without ``image_size`` that check waits for the data.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    source: str

    @model_validator(mode="after")
    def _options(self, info: ValidationInfo) -> "RegisteredData":
        options = _options_model(self.source).model_validate(self.model_extra or {}, context=info.context)
        self.__pydantic_extra__.update({k: getattr(options, k) for k in options.model_fields_set})
        return self

    def _option(self, name: str) -> Any:
        """A given option, else the loader's default (None where it has none)."""
        if name in (self.model_extra or {}):
            return self.model_extra[name]
        param = source_options(self.source).get(name)
        return None if param is None or param.default is param.empty else param.default

    def source_options(self) -> dict[str, Any]:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in (self.model_extra or {}).items()}
        if "seed" in source_options(self.source):
            options.setdefault("seed", None)  # filled with the experiment's seed
        return options

    def channels_in(self) -> int:
        return int(self._option("channels") or 3)

    def input_size(self) -> tuple[int, int] | None:
        size = self._option("image_size")
        if size is None:
            return None
        return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


_OPTION_MODELS: dict[Any, type[BaseModel]] = {}


def _options_model(source: str) -> type[BaseModel]:
    """A strict pydantic model of ``source``'s loader options, from its signature (cached per
    loader, so a source registered again with another signature gets a new model)."""
    loader = source_function(source)
    if loader in _OPTION_MODELS:
        return _OPTION_MODELS[loader]
    try:
        hints = typing.get_type_hints(loader)
    except Exception:  # noqa: BLE001  (unresolvable hints: check names only)
        hints = {}
    fields: dict[str, Any] = {}
    for name, param in source_options(source).items():
        hint = hints.get(name, Any)
        if _is_path(hint):
            hint = Annotated[hint, AfterValidator(_resolve)]
        fields[name] = (hint, ... if param.default is param.empty else param.default)
    model = create_model(f"{source}_options", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields)
    _OPTION_MODELS[loader] = model
    return model


def _is_path(hint: Any) -> bool:
    return hint is Path or Path in typing.get_args(hint)


def data_fields(source: Any) -> list[str]:
    """The keys ``data`` may have with ``source`` (for "unknown field" messages)."""
    model = _BUILT_IN.get(source)
    if model is not None:
        return [f for f in model.model_fields]
    shared = [f for f in _DataBase.model_fields]
    return ["source", *shared, *(source_options(source) if source in available_sources() else ())]


_BUILT_IN: dict[str, type[_DataBase]] = {
    "multimnist": MultiMNISTData,
    "files": FilesData,
    "scenes": ScenesData,
    "celeba": CelebAData,
}
DATA_MODELS = tuple(_BUILT_IN.values())
DATA_SOURCES = list(_BUILT_IN)
REGISTERED = "registered"  # the union's tag of every non-built-in registered source


def _source_tag(value: Any) -> str | None:
    """Which model validates ``data``: a built-in source's, or :class:`RegisteredData` for any
    other registered source; None (an unknown or missing source) fails validation."""
    source = value.get("source") if isinstance(value, dict) else getattr(value, "source", None)
    if not isinstance(source, str):
        return None
    if source in _BUILT_IN:
        return source
    return REGISTERED if source in available_sources() else None


def known_sources() -> list[str]:
    """Every source ``data.source`` may name: the built-ins, then the plugins' registered ones."""
    return DATA_SOURCES + [s for s in available_sources() if s not in _BUILT_IN]


DataConfig = Annotated[
    Union[
        Annotated[MultiMNISTData, Tag("multimnist")],
        Annotated[FilesData, Tag("files")],
        Annotated[ScenesData, Tag("scenes")],
        Annotated[CelebAData, Tag("celeba")],
        Annotated[RegisteredData, Tag(REGISTERED)],
    ],
    Discriminator(_source_tag, custom_error_type="unknown_source", custom_error_message="unknown or missing data source"),
]


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

