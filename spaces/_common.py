"""Pieces every section of the experiment schema uses."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Union

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve(path: Path | None, info: ValidationInfo) -> Path | None:
    """``path`` relative to the experiment file's folder (``context['base_dir']``) unless absolute."""
    if path is None:
        return path
    try:
        path = path.expanduser()
        if path.is_absolute():
            return path
        base = (info.context or {}).get("base_dir")
        return (Path(base) / path).resolve() if base else path
    except RuntimeError as exc:  # ~name of no user; a symlink loop
        raise ValueError(f"path {str(path)[:200]!r} cannot be resolved ({exc})") from None
    except OSError as exc:
        raise ValueError(f"path {str(path)[:200]!r} cannot be resolved ({exc.strerror})") from None


def _registered(what: str, name: str, available: Iterable[str]) -> str:
    """``name`` if it is one of ``available`` (a registry's names), else a ValueError listing them."""
    available = list(available)
    if name not in available:
        raise ValueError(f"unknown {what} {name!r}; allowed: {', '.join(available)}")
    return name


class FloatRange(_Strict):
    """A searched float in ``[low, high]``, log-uniform when ``log``."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "FloatRange":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        return self


class IntRange(_Strict):
    """A searched integer in ``[low, high]`` (both included)."""

    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> "IntRange":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


FloatParam = Union[float, FloatRange]
IntParam = Union[int, IntRange]


def choices(value: Any) -> list[Any]:
    """A categorical space entry: one value (fixed) or a list (searched)."""
    return list(value) if isinstance(value, list) else [value]
