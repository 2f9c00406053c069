"""The pluggable parts' parameters in the search space, read from the parts themselves.

A loss-weighting scheme's keyword-only constructor arguments are its parameters
(:func:`mtl_models.searchable_weighting_parameters`), and a model family's builder's
keyword-only arguments are its (:func:`mtl_models.searchable_family_parameters`), so
``space`` accepts ``<scheme>_<parameter>`` and ``<family>_<parameter>`` for every
registered scheme and family, a plugin's too, with no field written here: a value fixes it, ``{low, high[, log]}`` searches a number, a list
searches choices, and the default is the constructor's. The bounds of an
``Annotated[float, Gt(0)]`` hint are checked on the value or on both ends of a range.
"""
from __future__ import annotations

import operator
from collections.abc import Collection
from typing import Annotated, Any, Literal, Union

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, BaseModel, ConfigDict, create_model

from mtl_models import (
    SchemeParameter,
    available_families,
    available_weightings,
    family_parameters,
    weighting_parameters,
)

from ._common import FloatRange, IntRange

_BOUNDS = {Gt: ("gt", ">", operator.gt), Ge: ("ge", ">=", operator.ge), Lt: ("lt", "<", operator.lt), Le: ("le", "<=", operator.le)}


def part_parameters(reserved: Collection[str] = ()) -> dict[str, SchemeParameter]:
    """Every registered scheme's and family's searchable parameters by space key.

    Raises ``ValueError`` naming both parts when two parameters take one key (family ``a``'s
    ``b_c`` and family ``a_b``'s ``c``), or one takes a key of the space's own
    (family ``loss``'s ``weighting``): the trial config and the results table hold both
    under that key, so one would silently overwrite the other. A key a scheme maps on
    purpose (``config_keys``: static's ``weights`` is ``loss_weights``) is the config's own.
    ``reserved``: the space's own keys (``SpaceConfig.model_fields``; passed in, as the space
    validates with these parameters and so imports this module).
    """
    parts = [("loss weighting", n, weighting_parameters(n)) for n in available_weightings()]
    parts += [("model family", n, family_parameters(n)) for n in available_families()]
    taken: dict[str, str] = {key: "a field of the space itself" for key in reserved}
    out = {}
    for kind, name, params in parts:
        for key, p in params.items():
            owner = f"{kind} {name!r}'s argument {p.name!r}"
            if key == f"{name}_{p.name}" and key in taken:  # a mapped key (config_keys) is the config's own
                raise ValueError(
                    f"parameter key {key!r} of {owner} is already {taken[key]}; rename the argument or the {kind}"
                )
            taken[key] = owner
            if p.searchable:
                out[key] = p
    return out


def part_keys() -> list[str]:
    """The space keys of every registered scheme's and family's searchable parameters."""
    return list(part_parameters())


def validate_part_space(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (the space's keys that are no field of its own) checked against the schemes'
    and families' parameters; a pydantic ``ValidationError`` locates each problem by key."""
    model = _space_model(tuple(part_parameters().items()))
    validated = model.model_validate(given)
    return {key: getattr(validated, key) for key in validated.model_fields_set}


def space_value(space: BaseModel, key: str) -> Any:
    """``space.<key>`` for a part's parameter: the value, range or choices given, else the default."""
    extra = space.model_extra or {}
    return extra[key] if key in extra else part_parameters()[key].default


def numeric(key: str) -> bool:
    """Whether the parameter ``key`` is a number (a range), not a choice."""
    return part_parameters()[key].base in (float, int)


_MODELS: dict[tuple, type[BaseModel]] = {}


def _space_model(params: tuple[tuple[str, SchemeParameter], ...]) -> type[BaseModel]:
    if params not in _MODELS:
        fields = {key: (_space_type(p), None) for key, p in params}
        _MODELS[params] = create_model("PartSpace", __config__=ConfigDict(extra="forbid", frozen=True), **fields)
    return _MODELS[params]


def _space_type(p: SchemeParameter) -> Any:
    """A value, a range (numbers) or a list of choices (booleans, literals)."""
    base = p.base
    if base is float:
        return Annotated[Union[float, FloatRange], AfterValidator(lambda v: _check_bounds(p, v))]
    if base is int:
        return Annotated[Union[int, IntRange], AfterValidator(lambda v: _check_bounds(p, v))]
    choice = bool if base is bool else Literal[base]  # type: ignore[valid-type]
    return Union[choice, list[choice]]


def _check_bounds(p: SchemeParameter, value: Any) -> Any:
    ends = [value.low, value.high] if isinstance(value, (FloatRange, IntRange)) else [value]
    for bound in p.bounds:
        for kind, (attr, sign, ok) in _BOUNDS.items():
            if isinstance(bound, kind) and not all(ok(end, getattr(bound, attr)) for end in ends):
                raise ValueError(f"must be {sign} {getattr(bound, attr)}, got {_plain(value)}")
    return value


def _plain(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value
