"""The ``space`` section: what the search may vary (families, split points and trees, loss
weighting, training settings); every model family's own parameters (cross-stitch's, MTAN's,
MMoE's, PLE's, a plugin's) are its builder's arguments, read by ``spaces._parts``."""
from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import (
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from mtl_models import (
    BASELINE_FAMILIES,
    available_families,
    available_weightings,
)

from ._common import (
    FloatParam,
    IntParam,
    _registered,
    _Strict,
    choices,
)
from ._parts import space_value, validate_part_space, part_keys

SEARCHED_FAMILIES = ("hard_split", "cross_stitch")


Tree = Literal["single", "per_task", "grouped", "affinity"]
Optimization = Literal["joint", "alternating"]
ClassWeighting = Literal["none", "balanced"]


class SpaceConfig(_Strict):
    """What the search may choose. A plain value fixes a parameter, a range searches a
    number, a list searches a categorical choice.

    Hard splits: ``tree`` is ``single`` (one ``split_point``), ``per_task`` (one split
    point per task) or ``grouped`` (a shared trunk, then up to ``max_groups`` groups of
    tasks with their own branches, then one branch per task); ``branches`` fixes an
    explicit tree instead; ``tree: affinity`` takes the branch trees the task-affinity
    stage proposes (the experiment's ``affinity`` section). A tree is structure the
    sampler builds (which keys exist depends on the tree, their number on the tasks), so
    these are the space's own fields, not a builder's arguments.

    Every other family (cross-stitch, MTAN, MMoE, CGC/PLE, a plugin's) is declared by its
    builder's keyword-only arguments (``mtl_models.register_family``; their docstrings and
    ``Annotated`` hints say what each takes, ``spaces._parts`` reads them): the space fixes or
    searches each under its config key, ``<family>_<parameter>`` or the key the family maps
    (cross-stitch's ``alpha_same``, ``lr_multiplier: auto``, ``cross_stitch_stages: search``).

    Losses: ``loss_weighting`` (a registered scheme: ``static`` with ``loss_weights``,
    ``uncertainty``, ``dwa``, ``gradnorm``, or a plugin's), each scheme's parameters as ``<scheme>_<parameter>`` (``gradnorm_alpha``,
    ``dwa_temperature``) or under a key a scheme maps (``config_keys``: every gradient
    aggregator's ``aggregation_scope``, ``shared`` or ``last_shared_stage``),
    ``optimization`` (``joint`` or ``alternating``, seed 002), ``class_weighting``
    (``none`` or ``balanced``, seed 001), ``grad_clip``, ``lr``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)  # the extra keys: the schemes' and families' parameters

    families: list[str] = Field(default_factory=lambda: list(SEARCHED_FAMILIES), min_length=1)
    tree: Union[Tree, list[Tree]] = "single"
    split_point: IntParam | None = None
    max_groups: PositiveInt | None = None
    branches: list[list[list[str]]] | None = None
    loss_weighting: Union[str, list[str]] = "static"
    loss_weights: Union[Literal["simplex", "equal"], dict[str, PositiveFloat]] = "simplex"
    optimization: Union[Optimization, list[Optimization]] = "joint"
    class_weighting: Union[ClassWeighting, list[ClassWeighting]] = "none"
    grad_clip: FloatParam | None = None
    lr: FloatParam | None = None

    @field_validator("tree", "loss_weighting", "optimization", "class_weighting")
    @classmethod
    def _non_empty(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("give one value or a non-empty list of values to search")
        return v

    @field_validator("families")
    @classmethod
    def _known_families(cls, v: list[str]) -> list[str]:
        searchable = [f for f in available_families() if f not in BASELINE_FAMILIES]
        for name in v:
            if name not in searchable:
                raise ValueError(f"unknown model family {name!r}; allowed: {', '.join(searchable)}")
        return v

    @field_validator("loss_weighting")
    @classmethod
    def _known_schemes(cls, v: str | list[str]) -> str | list[str]:
        for name in choices(v):
            _registered("loss weighting", name, available_weightings())
        return v

    @model_validator(mode="after")
    def _scheme_parameters(self) -> "SpaceConfig":
        self.__pydantic_extra__.update(validate_part_space(self.model_extra or {}))
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle, also a space pickled when the families' parameters were fields of its own
        (runs and cached baselines saved before): those values become the extras they are now."""
        own = dict(state.get("__dict__") or {})
        moved = {k: own.pop(k) for k in list(own) if k not in type(self).model_fields}
        if moved:
            state = {**state, "__dict__": own, "__pydantic_extra__": {**moved, **(state.get("__pydantic_extra__") or {})}}
        super().__setstate__(state)

    @classmethod
    def allowed_fields(cls) -> list[str]:
        """Its own fields and every registered scheme's and family's parameters."""
        return [*cls.model_fields, *part_keys()]

    def part_param(self, key: str) -> Any:
        """A scheme's or family's parameter: its value, range or choices (the default when not given)."""
        return space_value(self, key)

    @field_validator("lr", "grad_clip")
    @classmethod
    def _positive(cls, v: FloatParam | None) -> FloatParam | None:
        low = v if isinstance(v, (int, float)) or v is None else v.low
        if low is not None and low <= 0:
            raise ValueError(f"must be > 0, got {v}")
        return v


