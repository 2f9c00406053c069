"""The ``data`` section's model for each registered source, built from the source itself.

A source (a built-in or a plugin's, registered with ``mtl_models.register_source``) is
declared once: its loader's keyword arguments are its options. :func:`data_model` turns
them into a strict pydantic model, as ``_parts`` does for scheme parameters: each option's
type hint (with its ``annotated_types`` bounds and ``mtl_models.Check`` checks) and default
are the field's; an option typed ``Path`` is taken relative to the experiment file (before
its checks run); ``seed`` may be left out or null for the experiment's. The source's
``SourceFacts`` adds the checks between options and the answers the experiment needs
before any data is read (:class:`spaces._data._DataBase`).
"""
from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, PlainValidator, SerializeAsAny, ValidationInfo, create_model
from pydantic_core import PydanticCustomError

from mtl_models.data import DataSource, available_sources, data_source, registered_sources

from ._common import _resolve
from ._data import _DataBase

_MODELS: dict[DataSource, type[_DataBase]] = {}


def data_model(source: str) -> type[_DataBase]:
    """The model of ``data`` for ``source`` (cached per registration, so a source registered
    again with another loader gets a new model)."""
    entry = data_source(source)
    if entry not in _MODELS:
        fields: dict[str, Any] = {"source": (Literal[source], ...)}
        for name, param in entry.options().items():
            hint = _paths_resolved(entry.hints()[name])
            default = ... if param.default is param.empty else param.default
            if name == "seed":  # left out or null: the experiment's seed
                hint, default = Optional[hint], None
            fields[name] = (hint, default)
        _MODELS[entry] = create_model(f"{source}_data", __base__=_DataBase, __module__=__name__, **fields)
    return _MODELS[entry]


def _paths_resolved(hint: Any) -> Any:
    """``hint`` with each ``Path`` (alone, in a union or under ``Annotated``) resolved against
    the experiment file's folder first, so its own checks see the path the loader will."""
    if hint is Path:
        return Annotated[Path, AfterValidator(_resolve)]
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *metadata = typing.get_args(hint)
        return Annotated[(_paths_resolved(base), *metadata)]
    if origin is Union or origin is types.UnionType:
        return Union[tuple(_paths_resolved(arg) for arg in typing.get_args(hint))]
    return hint


def _validate(value: Any, info: ValidationInfo) -> _DataBase:
    """``data`` validated by its source's model; an unknown or missing source fails here."""
    if isinstance(value, _DataBase):
        return value
    source = value.get("source") if isinstance(value, dict) else None
    if not isinstance(source, str) or source not in available_sources():
        raise PydanticCustomError("unknown_source", "unknown or missing data source")
    return data_model(source).model_validate(value, context=info.context)


def data_fields(source: Any) -> list[str]:
    """The keys ``data`` may have with ``source`` (for "unknown field" messages)."""
    if isinstance(source, str) and source in available_sources():
        return list(data_model(source).model_fields)
    return ["source", *_DataBase.model_fields]


def known_sources() -> list[str]:
    """Every source ``data.source`` may name: the built-ins, then the plugins' registered ones."""
    return registered_sources()


DataConfig = Annotated[SerializeAsAny[_DataBase], PlainValidator(_validate)]
