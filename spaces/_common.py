"""Pieces every section of the experiment schema uses."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, ValidationInfo


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve(path: Path | None, info: ValidationInfo) -> Path | None:
    """``path`` relative to the experiment file's folder (``context['base_dir']``) unless absolute."""
    if path is None:
        return path
    path = path.expanduser()
    if path.is_absolute():
        return path
    base = (info.context or {}).get("base_dir")
    return (Path(base) / path).resolve() if base else path


def _registered(what: str, name: str, available: Iterable[str]) -> str:
    """``name`` if it is one of ``available`` (a registry's names), else a ValueError listing them."""
    available = list(available)
    if name not in available:
        raise ValueError(f"unknown {what} {name!r}; allowed: {', '.join(available)}")
    return name
