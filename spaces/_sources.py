"""Which model validates the experiment's ``data``: a built-in source's own, or, for any
other source registered with ``mtl_models.register_source`` (a plugin's),
:class:`RegisteredData`, whose options are its loader's keyword arguments, checked
against their names, defaults and type hints (the signature is the schema, as for
backbones' options and Optuna's pruners).
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Tag, ValidationInfo, create_model, model_validator

from mtl_models.data import available_sources, source_function, source_options

from ._common import _resolve
from ._data import CelebAData, FilesData, MultiMNISTData, ScenesData, _DataBase


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
