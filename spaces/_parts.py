"""The pluggable parts' parameters in the search space, read from the parts themselves.

A loss-weighting scheme's keyword-only constructor arguments are its parameters
(:func:`mtl_models.searchable_weighting_parameters`), and a model family's builder's
keyword-only arguments are its (:func:`mtl_models.searchable_family_parameters`), built-in
families (cross-stitch, MTAN, MMoE, PLE) and plugins' alike, so ``space`` accepts
``<scheme>_<parameter>`` and ``<family>_<parameter>`` (or a part's mapped key:
``alpha_same``) for every registered scheme and family with no field written here: a value
fixes it, ``{low, high[, log]}`` searches a number, a list searches choices, and the default
is the constructor's (or its :class:`mtl_models.SpaceDefault`). The bounds of an
``Annotated[float, Gt(0)]`` hint are checked on the value or on both ends of a range. The
markers of ``mtl_models._markers`` add what a type cannot say: a
:class:`mtl_models.StageSubset` takes ``all``, ``search`` or a list of stages; a
:class:`mtl_models.Derived` or :class:`mtl_models.ByConfig` word (``convex``, ``auto``)
stands for a value derived from the config or a range chosen by it (:func:`resolve`).
"""
from __future__ import annotations

import operator
from collections.abc import Collection
from typing import Annotated, Any, Literal, Mapping, Union

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, BaseModel, ConfigDict, NonNegativeInt, create_model

from mtl_models import (
    ByConfig,
    Derived,
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
    """``space.<key>`` for a part's parameter: the value, range or choices given, else the
    space's default (:attr:`SchemeParameter.space_default`, validated: a range is a ``FloatRange``)."""
    extra = space.model_extra or {}
    if key in extra:
        return extra[key]
    p = part_parameters()[key]
    return getattr(_space_model(((key, p),)).model_validate({key: p.space_default}), key)


def numeric(key: str) -> bool:
    """Whether the parameter ``key`` is a number (a range), not a choice."""
    return part_parameters()[key].base in (float, int)


def is_subset(key: str) -> bool:
    """Whether the parameter ``key`` is a subset of stages (searched as ``<prefix>.<s>``)."""
    return part_parameters()[key].subset is not None


def resolve(key: str, value: Any, config: Mapping[str, Any]) -> Any:
    """The space's ``value`` of ``key`` with a :class:`mtl_models.ByConfig` word replaced by the
    range it stands for in ``config`` (``lr_multiplier: auto`` with ``optimizer: sgd``: 10..100
    log). Other values, :class:`mtl_models.Derived` words included, are returned as they are."""
    marker = derived_or_by_config(key, value)
    if isinstance(marker, ByConfig):
        return FloatRange(**marker.range_for(config))
    return value


def derived(key: str, value: Any) -> Derived | None:
    """The :class:`mtl_models.Derived` marker ``value`` names for ``key`` (``alpha_diff: convex``), else None."""
    marker = derived_or_by_config(key, value)
    return marker if isinstance(marker, Derived) else None


def derived_or_by_config(key: str, value: Any) -> Any:
    params = part_parameters()
    return params[key].words.get(value) if isinstance(value, str) and key in params else None


_MODELS: dict[tuple, type[BaseModel]] = {}


def _space_model(params: tuple[tuple[str, SchemeParameter], ...]) -> type[BaseModel]:
    if params not in _MODELS:
        fields = {key: (_space_type(p), None) for key, p in params}
        _MODELS[params] = create_model("PartSpace", __config__=ConfigDict(extra="forbid", frozen=True), **fields)
    return _MODELS[params]


def _space_type(p: SchemeParameter) -> Any:
    """A value, a range (numbers) or a list of choices (booleans, literals); a stage subset's
    ``all``, ``search`` or list of stages; a number's words (``convex``, ``auto``)."""
    base = p.base
    if p.subset is not None:
        return Union[Literal["all", "search"], list[NonNegativeInt]]
    words = tuple(p.words)
    if base in (float, int):
        number = Union[float, FloatRange] if base is float else Union[int, IntRange]
        checked = Annotated[number, AfterValidator(lambda v: _check_bounds(p, v))]
        return Union[Literal[words], checked] if words else checked  # type: ignore[valid-type]
    choice = bool if base is bool else Literal[base]  # type: ignore[valid-type]
    return Union[choice, Annotated[list[choice], AfterValidator(_non_empty)]]


def _non_empty(value: list[Any]) -> list[Any]:
    if not value:
        raise ValueError("give one value or a non-empty list of values to search")
    return value


def _check_bounds(p: SchemeParameter, value: Any) -> Any:
    ends = [value.low, value.high] if isinstance(value, (FloatRange, IntRange)) else [value]
    for bound in p.bounds:
        for kind, (attr, sign, ok) in _BOUNDS.items():
            if isinstance(bound, kind) and not all(ok(end, getattr(bound, attr)) for end in ends):
                raise ValueError(f"must be {sign} {_number(getattr(bound, attr))}, got {_plain(value)}")
    return value


def _number(bound: Any) -> Any:
    """A whole-number bound as an integer (``< 1``, never ``< 1.0``): typing caches ``Annotated``
    by equal metadata (1 == 1.0), so a hint written ``Lt(1)`` holds ``Lt(1.0)`` whenever another
    module made that one first in the process, and the message must not depend on which."""
    return int(bound) if isinstance(bound, float) and bound.is_integer() else bound


def _plain(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else value
