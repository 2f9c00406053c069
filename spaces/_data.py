"""The ``data`` section of the experiment: what every source shares, plus how trials are fed.

Every source shares the loader options (``loader``, ``num_workers``,
``memory_budget_mb``, ``augment``) and says which tasks it has
(``check_tasks``) and which augmentations would change a task's meaning
(``task_effects``), so the experiment is refused before any data is read.

A source's own options, defaults and checks are declared once, by its loader and its
``SourceFacts`` in ``mtl_models.data`` (a built-in's and a plugin's alike); ``_sources``
builds its model from them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    field_validator,
    model_validator,
)

from mtl_models import TaskSpec
from mtl_models.data import (
    SourceFacts,
    augmentation_class,
    augmentation_options,
    available_augmentations,
    data_source,
)

from ._common import _registered, _Strict

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
    """What every source shares: how trials are fed and which augmentations they get.

    A source's model (:func:`spaces._sources.data_model`) adds ``source`` and its loader's
    options as fields; what the source knows before its data is read comes from its
    :class:`mtl_models.data.SourceFacts`, given those options.
    """

    loader: Literal["auto", "tensors", "stream"] = "auto"
    num_workers: NonNegativeInt | None = None
    memory_budget_mb: PositiveFloat | None = None
    augment: list[AugmentConfig] = Field(default_factory=list)

    _LOADER_FIELDS = ("source", "loader", "num_workers", "memory_budget_mb", "augment")

    @model_validator(mode="after")
    def _source_checks(self) -> "_DataBase":
        self.facts().check()  # checks between options, declared with the source
        return self

    def options(self) -> dict[str, Any]:
        """The loader's options, each as given or the loader's default."""
        return {k: getattr(self, k) for k in type(self).model_fields if k not in self._LOADER_FIELDS}

    def facts(self) -> SourceFacts:
        """The source's answers before its data is read (``register_source(facts=...)``)."""
        return data_source(getattr(self, "source")).facts(self.options())

    def source_options(self) -> dict[str, Any]:
        """The keyword arguments of the source's loader (``mtl_models.load_data``): the options
        the file gives (the loader fills its defaults), paths as strings; a ``seed`` not given
        is None, for the experiment's."""
        options = {k: str(v) if isinstance(v, Path) else v for k, v in self.options().items() if k in self.model_fields_set}
        if "seed" in type(self).model_fields:
            options.setdefault("seed", None)
        return options

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
        return self.facts().channels_in()

    def input_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of the images the models see; None where the source does not say."""
        return self.facts().input_size()

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        """``(task index or None, message)`` per task the source cannot provide."""
        return self.facts().check_tasks(tasks)

    def train_rows(self) -> int | None:
        """How many training rows the source gives, where that is known without loading it."""
        return self.facts().train_rows()

    def task_effects(self, spec: TaskSpec) -> dict[str, str] | None:
        """Augmentation effects that change ``spec``'s labels, with why; ``None``: the source does not know."""
        return self.facts().task_effects(spec)


def default_task_effects(spec: TaskSpec) -> dict[str, str]:
    """Without the source's knowledge: an image-level regression value may be a coordinate."""
    if spec.kind == "regression":
        why = "a regressed value may be a coordinate or a left/right quantity"
        return {"mirror": why, "shift": why}
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

