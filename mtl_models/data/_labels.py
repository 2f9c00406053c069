"""How each task kind's labels are written in a data file: one small format per kind.

A format says how many columns a task takes, how one row's cells parse (or why they
do not), and how the parsed values become the task's target tensor. The target's
dtype comes from the task kind (``spec.kind_impl.target_dtype``); the missing value
is the one the kind's ``valid_mask`` rejects (-1 for class indices, NaN for floats).
New kinds register a format with :func:`register_label_format`; nothing else in the
loaders knows about kinds.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .._registry import Registry
from ..tasks import TaskSpec

MISSING_WORDS = ("", "-1")
_NAN_WORDS = ("nan", "na", "n/a", "none", "null")


FLOAT32_MAX = 3.4028234663852886e38


class LabelError(ValueError):
    """A cell that is not a valid label; ``offset`` is the cell's index within the task's columns."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


class LabelFormat(ABC):
    """How one kind of task is written: its columns, its cells' syntax, its tensor."""

    missing: Any

    def columns(self, spec: TaskSpec) -> int:
        """How many data-file columns the task takes (after the image path)."""
        return 1

    def column_names(self, spec: TaskSpec) -> list[str]:
        """The header names of those columns: the task name, or ``name.0 .. name.{k-1}``."""
        k = self.columns(spec)
        return [spec.name] if k == 1 else [f"{spec.name}.{i}" for i in range(k)]

    @abstractmethod
    def parse(self, spec: TaskSpec, cells: Sequence[str]) -> Any:
        """One row's value from its cells (stripped); raises :class:`LabelError`."""

    def tensor(self, spec: TaskSpec, values: Sequence[Any]) -> Tensor:
        """The ``(N, ...)`` target tensor of parsed values, in the kind's dtype."""
        return torch.tensor(list(values), dtype=spec.kind_impl.target_dtype)

    def describe(self, spec: TaskSpec) -> str:
        """What a valid cell looks like (for error messages and the README)."""
        return ""


def _integer(text: str) -> int | None:
    """``text`` as an integer; integral floats (``"2.0"``, as pandas writes them) count."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value == int(value) else None


class ClassIndex(LabelFormat):
    """A class index ``0..classes-1`` in one column; ``-1`` or empty means missing."""

    missing = -1

    def parse(self, spec: TaskSpec, cells: Sequence[str]) -> int:
        text = cells[0]
        if text in MISSING_WORDS:
            return -1
        value = _integer(text)
        if value is None:
            hint = " (a missing label is -1 or empty)" if text.lower() in _NAN_WORDS else ""
            raise LabelError(f"label {text!r} is not an integer class index{hint}; {self.describe(spec)}.")
        if not 0 <= value < int(spec.classes):
            raise LabelError(f"label {value} is out of range; {self.describe(spec)}.")
        return value

    def describe(self, spec: TaskSpec) -> str:
        return f"allowed: 0..{int(spec.classes) - 1}, or -1 or empty for missing"


class Numbers(LabelFormat):
    """``classes`` (default 1) numbers, one per column; empty or ``nan`` means missing."""

    missing = math.nan

    def columns(self, spec: TaskSpec) -> int:
        return int(spec.classes or 1)

    def parse(self, spec: TaskSpec, cells: Sequence[str]) -> float | list[float]:
        values = []
        for i, text in enumerate(cells):
            if text == "" or text.lower() in _NAN_WORDS:
                values.append(math.nan)
                continue
            try:
                value = float(text)
            except ValueError:
                raise LabelError(f"value {text!r} is not a number; {self.describe(spec)}.", i) from None
            if not math.isfinite(value):
                raise LabelError(f"value {text!r} is not finite; {self.describe(spec)}.", i)
            if abs(value) > FLOAT32_MAX:  # stored as float32: it would become infinite
                raise LabelError(f"value {text!r} is beyond float32's range (+-3.4e38); {self.describe(spec)}.", i)
            values.append(value)
        return values[0] if len(values) == 1 else values

    def describe(self, spec: TaskSpec) -> str:
        return "allowed: a finite number, or empty or nan for missing"


class ZeroOne(LabelFormat):
    """0/1 flags, one column per attribute (``classes``), stored ``(N, classes)`` float;
    -1 or empty is missing (NaN). The ``multilabel`` kind's format."""

    missing = math.nan

    def columns(self, spec: TaskSpec) -> int:
        return int(spec.classes or 1)

    def parse(self, spec: TaskSpec, cells: Sequence[str]) -> list[float]:
        values = []
        for i, text in enumerate(cells):
            if text in MISSING_WORDS or text.lower() in _NAN_WORDS:
                values.append(math.nan)
                continue
            value = _integer(text)
            if value not in (0, 1):
                raise LabelError(f"label {text!r} is not 0 or 1; {self.describe(spec)}.", i)
            values.append(float(value))
        return values

    def tensor(self, spec: TaskSpec, values: Sequence[Any]) -> Tensor:
        return torch.tensor(list(values), dtype=spec.kind_impl.target_dtype).reshape(len(values), -1)

    def describe(self, spec: TaskSpec) -> str:
        return "allowed: 0 or 1, or -1 or empty for missing"


class Flag(ZeroOne):
    """One 0/1 column stored ``(N,)`` float; -1 or empty is missing (NaN). The ``binary`` kind's format."""

    def columns(self, spec: TaskSpec) -> int:
        return 1

    def tensor(self, spec: TaskSpec, values: Sequence[Any]) -> Tensor:
        return super().tensor(spec, values).reshape(len(values))


_FORMATS: Registry[LabelFormat] = Registry("label format", defined_by=type)


def register_label_format(kind: str, *, replace: bool = False) -> Callable[[type[LabelFormat]], type[LabelFormat]]:
    """Register how tasks of ``kind`` are written in data files (one format per kind)."""

    def decorator(cls: type[LabelFormat]) -> type[LabelFormat]:
        _FORMATS.register(kind, cls(), replace=replace)
        return cls

    return decorator


for _kind, _format in (
    ("classification", ClassIndex),
    ("regression", Numbers),
    ("binary", Flag),
    ("multilabel", ZeroOne),
):
    register_label_format(_kind)(_format)


def label_format(spec: TaskSpec) -> LabelFormat:
    """The format of ``spec``'s kind; an unknown kind names the kinds data files can hold."""
    if spec.kind not in _FORMATS:
        raise ValueError(
            f"Task {spec.name!r}: data files cannot hold labels of kind {spec.kind!r} yet; "
            f"supported kinds: {', '.join(_FORMATS.names())}."
        )
    return _FORMATS.get(spec.kind)
