"""Data sources: a name in the experiment file -> a loader and what is known before it runs.

A source is declared once, where its loader is (timm's ``register_model``; Optuna's
pruners, whose constructor keyword arguments are their options):

- the loader's keyword arguments (besides ``tasks``) are the options an experiment gives
  next to ``source``: their defaults, type hints, ``annotated_types`` bounds and
  :class:`~mtl_models.Check` checks are the whole schema (``spaces`` builds the validated
  model from them; an option typed ``Path`` is relative to the experiment file; ``seed``
  left out is the experiment's);
- a :class:`SourceFacts` subclass, passed as ``register_source(name, facts=...)``, answers
  what the experiment asks before any data is read: which tasks the source has, which
  augmentations change a task's labels, the images' channels and size, the training rows,
  and checks between options.

The built-in sources (``files``, ``multimnist``, ``scenes``, ``celeba``) and a plugin's are
declared the same way; a plugin that passes no ``facts`` gets :class:`SourceFacts`' answers.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .._registry import Registry, keyword_options, option_hints
from ..tasks import TaskSpec

if TYPE_CHECKING:
    from ._tensors import MultiTaskData

DataLoaderFn = Callable[..., "MultiTaskData"]


class SourceFacts:
    """What an experiment knows about a source's data before reading it.

    ``options``: the loader's keyword arguments as the experiment file gives them, with
    the loader's defaults filled in (read as attributes: ``self.image_size``). Every answer
    has a default that reads the conventional options (``channels``, ``image_size``,
    ``n_train``); a source overrides what it knows better.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = dict(options)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["options"][name]
        except KeyError:
            raise AttributeError(name) from None

    def check(self) -> None:
        """Checks between options (one option's own check is a :class:`~mtl_models.Check` in
        its hint); raise ``ValueError`` naming the field (``data.split: ...``)."""

    def check_tasks(self, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
        """``(task index or None, message)`` per task the source cannot provide; a message
        that starts with ``data.`` is about an option."""
        return []

    def task_effects(self, spec: TaskSpec) -> dict[str, str] | None:
        """Augmentation effects (``mirror``, ``shift``, ``intensity``) that change ``spec``'s
        labels, with why; ``None``: the source does not know (a generic rule applies)."""
        return None

    def channels_in(self) -> int:
        """The images' channels: the ``channels`` option, else 3."""
        return int(self.options.get("channels") or 3)

    def input_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of the images (the ``image_size`` option, one side or two);
        None where the source does not say before its data is read."""
        size = self.options.get("image_size")
        if size is None:
            return None
        return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def train_rows(self) -> int | None:
        """The training rows where known without loading (the ``n_train`` option), else None."""
        n = self.options.get("n_train")
        return int(n) if n is not None else None


def missing_rate_problems(rates: dict[str, float] | None, tasks: list[TaskSpec]) -> list[tuple[int | None, str]]:
    """A ``missing_rate`` option's keys that are no task (the generators' shared option)."""
    names = [t.name for t in tasks]
    unknown = sorted(set(rates or {}) - set(names))
    return [(None, f"data.missing_rate: unknown task name(s) {unknown}; allowed: {names}")] if unknown else []


@dataclass(frozen=True)
class DataSource:
    """A registered source: its loader (the options' schema) and its facts' class."""

    loader: DataLoaderFn
    facts: type[SourceFacts] = SourceFacts

    def options(self) -> dict[str, inspect.Parameter]:
        """The loader's keyword arguments besides ``tasks``."""
        return keyword_options(self.loader, skip=("tasks",))

    def hints(self) -> dict[str, Any]:
        """The options' type hints (bounds and checks included)."""
        return option_hints(self.loader, skip=("tasks",))


_SOURCES: Registry[DataSource] = Registry("data source", defined_by=lambda source: source.loader)


def register_source(
    name: str, *, facts: type[SourceFacts] = SourceFacts, replace: bool = False
) -> Callable[[DataLoaderFn], DataLoaderFn]:
    """Register ``loader(tasks: list[TaskSpec], **options) -> MultiTaskData`` under ``name``,
    with ``facts`` (a :class:`SourceFacts` subclass) answering what is known before it runs.

    The loader's keyword arguments are the options an experiment file gives next to
    ``source`` (:func:`source_options`): their defaults and type hints are what the
    file is validated against, so a plugin's source is usable from YAML as is.
    A taken name is refused unless ``replace``.
    """

    def register(loader: DataLoaderFn) -> DataLoaderFn:
        _SOURCES.register(name, DataSource(loader, facts), replace=replace)
        return loader

    return register


def available_sources() -> list[str]:
    """The registered sources' names, sorted."""
    return _SOURCES.names()


def registered_sources() -> list[str]:
    """The registered sources' names in registration order: the built-ins (``multimnist``,
    ``files``, ``scenes``, ``celeba``), then the plugins' as they were imported."""
    return list(_SOURCES)


def data_source(source: str) -> DataSource:
    """The registered source ``source``; an unknown name lists the known ones."""
    return _SOURCES.get(source)


def source_function(source: str) -> DataLoaderFn:
    """The registered loader of ``source``; an unknown name lists the known ones."""
    return _SOURCES.get(source).loader


def source_options(source: str) -> dict[str, inspect.Parameter]:
    """The options ``source``'s loader takes (its keyword arguments besides ``tasks``)."""
    return _SOURCES.get(source).options()


def load_data(source: str, tasks: list[TaskSpec], **options: Any) -> "MultiTaskData":
    """Load (or generate) a dataset with a registered source's loader and its options."""
    return source_function(source)(tasks, **options)
