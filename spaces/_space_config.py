"""The ``space`` section: what the search may vary (families, split points, cross-stitch,
MTAN, trees, loss weighting), with the cross-stitch unit learning-rate ranges per optimiser."""
from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import (
    ConfigDict,
    Field,
    NonNegativeInt,
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
    FloatRange,
    IntParam,
    _registered,
    _Strict,
    choices,
)
from ._parts import space_value, validate_part_space, part_keys

SEARCHED_FAMILIES = ("hard_split", "cross_stitch")


Tree = Literal["single", "per_task", "grouped", "affinity"]
Unit = Literal["channel", "scalar", "nddr"]
ColumnInit = Literal["backbone", "single_task"]
Optimization = Literal["joint", "alternating"]
ClassWeighting = Literal["none", "balanced"]


# The units' learning-rate multiplier searched by default (``lr_multiplier: auto``), by
# optimizer, from bench/cross_stitch_lr.py (4 tasks, convex init 0.7/0.1, 8 epochs, 2 seeds;
# bench/results/cross_stitch_lr.json). SGD (momentum 0.9): a step on alpha scales with its
# tiny gradient, so the units need a large multiplier, as in the paper; 10-100 gave the
# best Delta_m (-8.4 and -8.2) and 1000, the paper's upper end, diverged at lr 0.03.
# Adam/AdamW: a step on alpha is about lr x multiplier whatever the gradient; 0.1-10 kept
# |alpha| under 2.1 (Delta_m -2.3 to -1.3), 100 grew it to 7.8 (-5.2) and 1000 to 47 with
# rows of negative sum (-36): the paper's range, taken over to Adam, breaks the units.
LR_MULTIPLIER_RANGES: dict[str, FloatRange] = {
    "sgd": FloatRange(low=10.0, high=100.0, log=True),
    "adam": FloatRange(low=0.1, high=10.0, log=True),
    "adamw": FloatRange(low=0.1, high=10.0, log=True),
}


class SpaceConfig(_Strict):
    """What the search may choose. A plain value fixes a parameter, a range searches a
    number, a list searches a categorical choice.

    Hard splits: ``tree`` is ``single`` (one ``split_point``), ``per_task`` (one split
    point per task) or ``grouped`` (a shared trunk, then up to ``max_groups`` groups of
    tasks with their own branches, then one branch per task); ``branches`` fixes an
    explicit tree instead. Cross-stitch: ``cross_stitch_stages`` is ``all``, ``search``
    (a searched subset) or a list of stage indices; ``cross_stitch_unit`` the units'
    granularity: ``channel`` (Misra et al.), ``scalar`` (one alpha per task pair) or ``nddr``
    (Gao et al.'s 1x1-convolution fusion), a list searches them. MTAN (Liu et al.):
    ``mtan_stages`` are the stages after which every task has an attention module (the
    last always): ``search`` (default, a searched subset), ``all`` or a list. MMoE (Ma et al.)
    and CGC/PLE (Tang et al.) are declared by their builders' arguments: ``mmoe_experts``,
    ``mmoe_gate``; ``ple_shared``, ``ple_specific``, ``ple_levels`` (at most the backbone's
    stages; 1 is CGC), ``ple_gate``, ``ple_shared_gate``. Hard splits
    with ``tree: affinity`` take the branch trees the task-affinity stage proposes (the
    experiment's ``affinity`` section). ``alpha_diff`` ``convex`` (default)
    gives every unit row the sum 1 with the rest shared evenly,
    ``alpha_diff = (1 - alpha_same) / (T - 1)`` (the paper's 2-task pairs are convex), a
    value or range samples it on its own; ``lr_multiplier`` ``auto`` (default) is the
    range that suits the optimizer (:data:`LR_MULTIPLIER_RANGES`); ``column_init`` is ``backbone``
    (as the backbone section builds it: random or its weights file) or
    ``single_task`` (from this run's single-task baselines, Misra et al.'s second
    recipe). Losses: ``loss_weighting`` (a registered scheme: ``static`` with
    ``loss_weights``, ``uncertainty``, ``dwa``, ``gradnorm``, or a plugin's), each
    scheme's parameters as ``<scheme>_<parameter>`` (``gradnorm_alpha``,
    ``dwa_temperature``; read from the schemes, see ``spaces._parts``) or under a key a
    scheme maps (``config_keys``: every gradient aggregator's ``aggregation_scope``,
    ``shared`` or ``last_shared_stage``),
    ``optimization`` (``joint`` or ``alternating``, seed 002), ``class_weighting``
    (``none`` or ``balanced``, seed 001), ``grad_clip``. ``families`` may also name a
    plugin's family (``mtl_models.register_family``), its builder's keyword-only
    arguments searched or fixed as ``<family>_<parameter>``, as schemes' are.
    """

    model_config = ConfigDict(extra="allow", frozen=True)  # the extra keys: the schemes' parameters

    families: list[str] = Field(default_factory=lambda: list(SEARCHED_FAMILIES), min_length=1)
    tree: Union[Tree, list[Tree]] = "single"
    split_point: IntParam | None = None
    max_groups: PositiveInt | None = None
    branches: list[list[list[str]]] | None = None
    alpha_same: FloatParam = FloatRange(low=0.5, high=1.0)
    alpha_diff: Union[Literal["convex"], FloatParam] = "convex"
    lr_multiplier: Union[Literal["auto"], FloatParam] = "auto"
    cross_stitch_stages: Union[Literal["all", "search"], list[NonNegativeInt]] = "all"
    cross_stitch_unit: Union[Unit, list[Unit]] = "channel"
    mtan_stages: Union[Literal["all", "search"], list[NonNegativeInt]] = "search"
    column_init: Union[ColumnInit, list[ColumnInit]] = "backbone"
    loss_weighting: Union[str, list[str]] = "static"
    loss_weights: Union[Literal["simplex", "equal"], dict[str, PositiveFloat]] = "simplex"
    optimization: Union[Optimization, list[Optimization]] = "joint"
    class_weighting: Union[ClassWeighting, list[ClassWeighting]] = "none"
    grad_clip: FloatParam | None = None
    lr: FloatParam | None = None

    @field_validator("tree", "column_init", "loss_weighting", "optimization", "class_weighting", "cross_stitch_unit")
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

    @classmethod
    def allowed_fields(cls) -> list[str]:
        """Its own fields and every registered scheme's and family's parameters."""
        return [*cls.model_fields, *part_keys()]

    def part_param(self, key: str) -> Any:
        """A scheme's or family's parameter: its value, range or choices (the default when not given)."""
        return space_value(self, key)

    @field_validator("alpha_same", "alpha_diff")
    @classmethod
    def _unit_interval(cls, v: FloatParam | str) -> FloatParam | str:
        if isinstance(v, str):
            return v
        low, high = (v, v) if isinstance(v, (int, float)) else (v.low, v.high)
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"cross-stitch alphas must lie in [0, 1] (Misra et al. 2016), got {v}")
        return v

    @field_validator("lr_multiplier", "lr", "grad_clip")
    @classmethod
    def _positive(cls, v: FloatParam | str | None) -> FloatParam | str | None:
        if isinstance(v, str):
            return v
        low = v if isinstance(v, (int, float)) or v is None else v.low
        if low is not None and low <= 0:
            raise ValueError(f"must be > 0, got {v}")
        return v


