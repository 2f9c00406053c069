"""The experiment file: a validated, declarative description of data, tasks, backbone,
training, the search space, the search and the baselines.

Validation happens here, at the boundary: every error names the file, line and
field, what was given and what is allowed. Code after this trusts the values.
"""
from __future__ import annotations

import functools
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import optuna
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mtl_models import (
    MultiTaskData,
    TaskSpec,
    available_backbones,
    available_task_kinds,
    available_weightings,
    backbone_options,
    build_backbone,
    import_plugin,
    is_plugin_path,
    load_data,
)
from mtl_models.data import prepare_for_trials

from ._common import FloatParam, FloatRange, IntParam, IntRange, _registered, _resolve, _Strict, choices
from ._data import augment_problems
from ._sources import DataConfig, data_fields, known_sources
from ._weighting import numeric, space_value, validate_weighting_space, weighting_keys
from ._yaml import ExperimentError, format_loc, line_of, load_yaml

SEARCHED_FAMILIES = ("hard_split", "cross_stitch")


class TaskConfig(_Strict):
    """One task: ``name``, ``kind`` and, per kind, ``classes``, ``loss``, ``metric``."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    kind: str
    classes: PositiveInt | None = None
    loss: str | None = None
    metric: str | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        return _registered("task kind", v, available_task_kinds())

    @model_validator(mode="after")
    def _valid_for_kind(self) -> "TaskConfig":
        spec = self.spec()
        spec.kind_impl.validate(spec)
        return self

    def spec(self) -> TaskSpec:
        return TaskSpec(self.name, self.kind, self.classes, self.loss, self.metric)


class BackboneConfig(_Strict):
    """A registered backbone, its options and an optional local weights file."""

    name: str
    weights: Path | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        return _registered("backbone", v, available_backbones())

    @model_validator(mode="after")
    def _known_options(self) -> "BackboneConfig":
        allowed = backbone_options(self.name)
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise ValueError(
                f"backbone.options: {self.name!r} takes no option(s) {unknown}; allowed: {', '.join(allowed) or 'none'}"
            )
        return self

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        v = _resolve(v, info)
        if v is not None and not v.is_file():
            raise ValueError(f"weights file {str(v)!r} does not exist")
        return v


class HeadConfig(_Strict):
    """Task heads: pool to a ``pool_size`` x ``pool_size`` grid, optional hidden layer."""

    pool_size: PositiveInt = 1
    hidden: NonNegativeInt = 0


class TrainConfig(_Strict):
    """Training settings shared by every trial and baseline (the same budget for all).

    ``lr_schedule``: the learning rate per optimisation step, after ``warmup_epochs`` of
    linear warmup: ``cosine`` (default) decays it to zero by the last step, so the
    last epoch, the one scored, is a stable estimate rather than a noisy sample of a
    model still taking full steps; ``step`` multiplies it by ``lr_gamma`` at each of
    ``lr_milestones`` (fractions of training); ``constant`` keeps it.

    Speed settings (they change how fast, barely what is learned): ``precision``
    ``auto`` trains in bf16 autocast on a GPU that supports it and fp32 elsewhere;
    ``channels_last`` ``auto`` uses the channels-last memory format on GPUs;
    ``compile`` wraps the training forward pass in ``torch.compile`` (pays a
    compile time per trial; worth it for long trials).
    """

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    grad_clip: PositiveFloat | None = None
    lr_schedule: Literal["constant", "cosine", "step"] = "cosine"
    warmup_epochs: NonNegativeFloat = 0.0
    lr_milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75])
    lr_gamma: PositiveFloat = 0.1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False

    @field_validator("lr_milestones")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < m < 1.0 for m in v) or v != sorted(v):
            raise ValueError(f"lr_milestones are increasing fractions of training in (0, 1), got {v}")
        return v

    @model_validator(mode="after")
    def _warmup_within_training(self) -> "TrainConfig":
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be less than epochs ({self.epochs})")
        return self


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
    last always): ``search`` (default, a searched subset), ``all`` or a list. Hard splits
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
    ``dwa_temperature``; read from the schemes, see ``spaces._weighting``),
    ``optimization`` (``joint`` or ``alternating``, seed 002), ``class_weighting``
    (``none`` or ``balanced``, seed 001), ``grad_clip``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)  # the extra keys: the schemes' parameters

    families: list[Literal["hard_split", "cross_stitch", "mtan"]] = Field(
        default_factory=lambda: list(SEARCHED_FAMILIES), min_length=1
    )
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

    @field_validator("loss_weighting")
    @classmethod
    def _known_schemes(cls, v: str | list[str]) -> str | list[str]:
        for name in choices(v):
            _registered("loss weighting", name, available_weightings())
        return v

    @model_validator(mode="after")
    def _scheme_parameters(self) -> "SpaceConfig":
        self.__pydantic_extra__.update(validate_weighting_space(self.model_extra or {}))
        return self

    @classmethod
    def allowed_fields(cls) -> list[str]:
        """Its own fields and every registered scheme's parameters."""
        return [*cls.model_fields, *weighting_keys()]

    def weighting_param(self, key: str) -> Any:
        """A scheme parameter's value, range or choices (the scheme's default when not given)."""
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


_PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "nop": optuna.pruners.NopPruner,
}


class PrunerConfig(BaseModel):
    """An Optuna pruner by name; other keys are its constructor's arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal["median", "percentile", "successive_halving", "hyperband", "threshold", "nop"] = "median"

    @model_validator(mode="after")
    def _known_arguments(self) -> "PrunerConfig":
        params = set(inspect.signature(_PRUNERS[self.name].__init__).parameters) - {"self", "args", "kwargs"}
        unknown = sorted(set(self.options()) - params)
        if unknown:
            raise ValueError(
                f"unknown argument(s) {unknown} for pruner {self.name!r}; allowed: {', '.join(sorted(params)) or 'none'}"
            )
        return self

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def build(self, max_epochs: int) -> optuna.pruners.BasePruner:
        options = self.options()
        if self.name == "hyperband":
            options.setdefault("max_resource", max_epochs)
        return _PRUNERS[self.name](**options)


class SamplerConfig(_Strict):
    """Optuna's TPE (default), NSGA-II (multi-objective) or random sampler.

    TPE handles one objective and several alike; ``n_startup_trials`` random trials
    come first. NSGA-II evolves ``population_size`` trials per generation.
    """

    name: Literal["tpe", "nsga2", "random"] = "tpe"
    n_startup_trials: NonNegativeInt = 5
    population_size: int = Field(10, ge=2)
    seed: int | None = None

    def resolved_seed(self, default_seed: int) -> int:
        """``seed``, else the experiment's."""
        return self.seed if self.seed is not None else default_seed

    def build(self, default_seed: int) -> optuna.samplers.BaseSampler:
        seed = self.resolved_seed(default_seed)
        if self.name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.name == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed)
        return optuna.samplers.TPESampler(n_startup_trials=self.n_startup_trials, seed=seed, multivariate=True)


class ResourcesConfig(_Strict):
    """Resources of one trial; a fractional ``gpu`` packs several trials on one GPU."""

    cpu: PositiveFloat = 1.0
    gpu: NonNegativeFloat = 0.0


class FaultConfig(_Strict):
    """Fault injection, to test a search's resilience: the trial fails at ``epoch``.

    ``raise``: an exception; ``nan``: the weights turn NaN so the loss does; ``oom``:
    ``torch.cuda.OutOfMemoryError``; ``disk_full``: writing the epoch's checkpoint fails
    with a real ``ENOSPC`` (its state file is opened on ``/dev/full``, the kernel's
    always-full device); ``hang``: the trial stops making progress before the epoch (a
    stuck filesystem) until it is stopped, so a test can kill the driver at a known
    point. ``times``: on how many attempts of the trial the fault fires (a retry or a
    resume is an attempt; default: every one), counted on the node.
    """

    kind: Literal["raise", "nan", "oom", "disk_full", "hang"]
    epoch: PositiveInt = 1
    times: PositiveInt | None = None


OBJECTIVE_DIRECTIONS = {"delta_m": "max", "params": "min", "flops": "min", "latency_ms_b1": "min", "latency_ms_bN": "min"}


class SearchConfig(_Strict):
    """How the search runs: trials, concurrency, sampler, pruner, resources, retries.

    ``objectives``: what the search optimises: ``[delta_m]`` (default), or Delta_m and
    costs to minimise (``params``, ``flops``, ``latency_ms_b1``, ``latency_ms_bN``),
    a multi-objective search whose result is a Pareto front. Optuna's pruners judge
    one objective, so a multi-objective search does not prune (the default pruner
    turns to ``nop``; naming another is an error).
    ``max_failures``: how often a trial is restarted from its last checkpoint after its
    worker or node dies (or it raises). ``inject_faults``: ``{trial number: fault}``
    for resilience tests (trial numbers count the searched trials from 0).
    """

    objectives: list[Literal["delta_m", "params", "flops", "latency_ms_b1", "latency_ms_bN"]] = Field(
        default_factory=lambda: ["delta_m"], min_length=1
    )
    num_trials: PositiveInt = 20
    max_concurrent: PositiveInt | None = None
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    resources: ResourcesConfig = ResourcesConfig()
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    max_failures: NonNegativeInt = 2
    inject_faults: dict[NonNegativeInt, FaultConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _objectives(self) -> "SearchConfig":
        if self.objectives[0] != "delta_m" or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(
                f"objectives: the first must be delta_m and none repeated, got {self.objectives}; "
                f"allowed after delta_m: {', '.join(list(OBJECTIVE_DIRECTIONS)[1:])}"
            )
        if self.multi_objective:
            if "pruner" in self.model_fields_set and self.pruner.name != "nop":
                raise ValueError(
                    f"pruner: {self.pruner.name!r} judges a single objective; a multi-objective search "
                    f"(objectives {self.objectives}) cannot prune; set pruner: {{name: nop}} or drop it"
                )
            object.__setattr__(self, "pruner", PrunerConfig(name="nop"))
        elif self.sampler.name == "nsga2":
            raise ValueError("sampler: nsga2 is for multi-objective searches; with one objective use tpe or random")
        return self

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        """``max``/``min`` per objective."""
        return [OBJECTIVE_DIRECTIONS[o] for o in self.objectives]


class BaselinesConfig(_Strict):
    """The baselines every searched config is compared with (Delta_m needs ``single_task``).

    ``seeds``: single-task networks per task, each with its own seed; their mean is
    ``B_t`` and their spread the seed noise every difference is judged against (at least
    2 to measure it). The ensemble averages ``ensemble_size`` of them per task (default:
    the number of tasks, parameter-matched with a cross-stitch network); when it needs
    more than ``seeds``, that many are trained.
    """

    single_task: Literal[True] = True
    seeds: PositiveInt = 3
    ensemble: bool = True
    ensemble_size: PositiveInt | None = None


class ConfirmConfig(_Strict):
    """The confirmation phase: after the search, the shortlist is trained again with fresh seeds.

    The shortlist is the best config per objective, the Pareto-optimal ones (several
    objectives) and the ``top_k`` by Delta_m, at most ``max_configs`` distinct configs;
    each is trained with ``seeds`` seeds it was not trained with, as Ray Tune trials
    without pruning. Its statistics over those seeds (the search's own run of it is
    left out: it was chosen because it scored well) are what the report ranks and what
    ``select`` and ``export --best`` use. ``default`` also trains the configuration a
    user would take without any search, everything shared with equal loss weights, with
    the same seeds, so the report can say whether the search beat it. ``top_k: 0`` or
    ``seeds: 0`` turns the phase off.
    """

    top_k: NonNegativeInt = 3
    seeds: NonNegativeInt = 3
    max_configs: PositiveInt = 6
    default: bool = True

    @property
    def enabled(self) -> bool:
        return self.top_k > 0 and self.seeds > 0


class SelectConfig(_Strict):
    """How the deploy candidate is picked from the results.

    ``max_task_drop``: how much a task may lose against single-task. ``noise`` (default):
    no task may be worse beyond its noise (its 95 % interval lies below single-task);
    a number: at most that many percent, relative (1.0: one percent); ``null``: no limit.
    """

    max_task_drop: Union[Literal["noise"], NonNegativeFloat, None] = "noise"


class AffinityConfig(_Strict):
    """The optional first stage of a search: task affinity (TAG, Fifty et al. 2021).

    With ``epochs`` > 0, one network with every stage shared trains that long after the
    baselines; every ``every`` steps each task's lookahead update of each stage is tried
    and every task's loss measured again (``mtlsearch affinity`` does the same alone).
    The branch trees this implies (at most ``max_groups`` groups a stage) join the
    search as hard splits with ``tree: affinity`` and are tried first; the report shows
    the matrices and how the trees fared.
    """

    epochs: NonNegativeInt = 0
    every: PositiveInt = 5
    max_groups: PositiveInt | None = None

    @property
    def enabled(self) -> bool:
        return self.epochs > 0


class Experiment(_Strict):
    """A whole experiment file. Load one with :func:`load_experiment`."""

    name: str = Field("experiment", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    plugins: list[str] = Field(default_factory=list)
    data: DataConfig
    tasks: list[TaskConfig] = Field(min_length=1)
    backbone: BackboneConfig
    head: HeadConfig = HeadConfig()
    train: TrainConfig = TrainConfig()
    space: SpaceConfig = SpaceConfig()
    search: SearchConfig = SearchConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    confirm: ConfirmConfig = ConfirmConfig()
    select: SelectConfig = SelectConfig()
    affinity: AffinityConfig = AffinityConfig()
    source_path: Path | None = Field(None, exclude=True)

    @field_validator("plugins")
    @classmethod
    def _importable(cls, v: list[str], info: ValidationInfo) -> list[str]:
        """Import each plugin now (it registers what the rest of the file names); a path is
        taken relative to the experiment file and kept absolute."""
        resolved = []
        for entry in v:
            if is_plugin_path(entry):
                path = _resolve(Path(entry), info)
                if not path.exists():
                    raise ValueError(f"plugin {entry!r}: {str(path)!r} does not exist; give a .py file, a package folder or a module name")
                entry = str(path)
            try:
                import_plugin(entry)
            except ImportError as exc:
                raise ValueError(f"cannot import plugin module {entry!r}: {exc}") from None
            resolved.append(entry)
        return resolved

    @model_validator(mode="after")
    def _consistent(self) -> "Experiment":
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tasks: duplicate task name(s) {dupes}")
        if len(names) < 2:
            raise ValueError(f"tasks: multi-task search needs at least 2 tasks, got {names}")
        if isinstance(self.space.loss_weights, dict) and set(self.space.loss_weights) != set(names):
            raise ValueError(
                f"space.loss_weights: keys {sorted(self.space.loss_weights)} must be exactly the tasks {names}"
            )
        specs = self.task_specs()
        for index, message in self.data.check_tasks(specs):
            if message.startswith("data."):
                raise ValueError(message)
            raise ValueError(f"tasks{'' if index is None else f'[{index}]'}: {message}")
        for message in augment_problems(self.data, specs):
            raise ValueError(message)
        facts = self._backbone_facts()
        if facts.error:
            raise ValueError(
                f"backbone: {self.backbone.name!r} cannot process {self.input_size()[0]}x{self.input_size()[1]} "
                f"inputs ({facts.error}); use larger images (data.image_size) or another backbone"
            )
        n = len(facts.stage_names)
        sp = self.space.split_point
        low, high = (sp, sp) if isinstance(sp, int) else ((sp.low, sp.high) if sp else (0, n))
        if not 0 <= low <= high <= n:
            raise ValueError(
                f"space.split_point: {sp} is outside 0..{n} for backbone {self.backbone.name!r} "
                f"(stages: {', '.join(self.stage_names())})"
            )
        for key in ("cross_stitch_stages", "mtan_stages"):
            stages = getattr(self.space, key)
            bad = [s for s in stages if s >= n] if isinstance(stages, list) else []
            if bad:
                raise ValueError(f"space.{key}: {bad} out of range; stages are 0..{n - 1}")
        if "affinity" in choices(self.space.tree) and not self.affinity.enabled:
            raise ValueError("space.tree: affinity trees come from the affinity stage; set affinity.epochs > 0")
        if self.affinity.enabled and "hard_split" not in self.space.families:
            raise ValueError("affinity: its proposed trees are hard splits; add hard_split to space.families")
        if self.affinity.enabled and self.space.branches is not None:
            raise ValueError("affinity: space.branches fixes the tree; drop one of them")
        if self.space.branches is not None:
            self._check_branches(self.space.branches, names, n)
        dense = [t.name for t in self.tasks if t.spec().kind_impl.dense]
        if dense and not self._last_stage_spatial():
            raise ValueError(f"tasks: dense task(s) {dense} need a backbone whose last stage outputs maps, not vectors")
        for i, point in enumerate(self.search.points_to_evaluate):
            self._check_point(i, point, names, low, high)
        return self

    @staticmethod
    def _check_branches(branches: list[list[list[str]]], names: list[str], n: int) -> None:
        where = "space.branches"
        if len(branches) != n:
            raise ValueError(f"{where}: {len(branches)} stages given; the backbone has {n}")
        previous = [set(names)]
        for s, part in enumerate(branches):
            flat = [t for g in part for t in g]
            if sorted(flat) != sorted(names):
                raise ValueError(f"{where}[{s}]: the groups must hold each task exactly once: {names}")
            for group in part:
                if not any(set(group) <= parent for parent in previous):
                    raise ValueError(f"{where}[{s}]: group {group} merges branches of stage {s - 1}; branches only split")
            previous = [set(g) for g in part]

    def _last_stage_spatial(self) -> bool:
        return self._backbone_facts().last_spatial

    def _check_point(self, i: int, point: dict[str, Any], names: list[str], low: int, high: int) -> None:
        """A starting point may give any searched parameter, by its config key."""
        where = f"search.points_to_evaluate[{i}]"
        schemes = weighting_keys()  # the loss-weighting schemes' parameters (gradnorm_alpha, ...)
        numbers = ("alpha_same", "alpha_diff", "lr_multiplier", *[k for k in schemes if numeric(k)], "grad_clip", "lr")
        if self.space.alpha_diff == "convex" and "alpha_diff" in point:
            same = point.get("alpha_same")
            convex = None if same is None else (1.0 - float(same)) / (len(names) - 1)
            if convex is None or abs(float(point["alpha_diff"]) - convex) > 1e-9:
                raise ValueError(
                    f"{where}: alpha_diff is derived from alpha_same (space.alpha_diff: convex, each unit row sums "
                    f"to 1); give alpha_same only, or set space.alpha_diff to a value or range"
                )
        categoricals = (
            "tree", "column_init", "cross_stitch_unit", "loss_weighting", *[k for k in schemes if not numeric(k)],
            "optimization", "class_weighting",
        )
        allowed = ("family", "split_point", "split_points", *numbers, *categoricals, "loss_weights")
        unknown = sorted(set(point) - set(allowed))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")
        if "family" in point and point["family"] not in self.space.families:
            raise ValueError(f"{where}: family {point['family']!r} is not searched; allowed: {self.space.families}")
        splits = [point["split_point"]] if "split_point" in point else []
        splits += list((point.get("split_points") or {}).values())
        if "split_points" in point and set(point["split_points"]) != set(names):
            raise ValueError(f"{where}: split_points must give a split point for each task {names}")
        for k in splits:
            if not (isinstance(k, int) and low <= k <= high):
                raise ValueError(f"{where}: split point {k!r} must be an integer in {low}..{high}")
        for key in numbers:
            param = self.space_param(key)
            if key == "alpha_diff" and param == "convex":
                continue
            ranged = isinstance(param, (FloatRange, IntRange))
            if key in point and ranged and not param.low <= point[key] <= param.high:
                raise ValueError(f"{where}: {key} {point[key]!r} is outside the space's [{param.low}, {param.high}]")
            if key in point and not ranged:
                raise ValueError(f"{where}: {key} is not searched (fixed to {param}); remove it from the point")
        for key in categoricals:
            if key in point and point[key] not in choices(self.space_param(key)):
                raise ValueError(f"{where}: {key} {point[key]!r} is not among the space's {choices(self.space_param(key))}")
        weights = point.get("loss_weights")
        if weights is not None:
            if self.space.loss_weights != "simplex":
                raise ValueError(f"{where}: loss_weights are only searched with space.loss_weights: simplex")
            if not isinstance(weights, dict) or set(weights) != set(names) or min(weights.values()) <= 0:
                raise ValueError(f"{where}: loss_weights must give a positive weight for each task {names}")

    def space_param(self, key: str) -> Any:
        """``space.<key>`` with ``auto`` resolved: ``lr_multiplier: auto`` is the range for the
        experiment's optimizer (:data:`LR_MULTIPLIER_RANGES`); a scheme parameter's default
        where the space does not give it."""
        value = self.space.weighting_param(key) if key in weighting_keys() else getattr(self.space, key)
        if key == "lr_multiplier" and value == "auto":
            return LR_MULTIPLIER_RANGES[self.train.optimizer]
        return value

    def load_data(self) -> MultiTaskData:
        """Load (or generate) the experiment's dataset, checking every row.

        Raises :class:`mtl_models.DataErrors` naming each bad file, line and column.
        Generators without a ``seed`` use the experiment's; so does a ``split``.
        """
        options = self.data.source_options()
        if "seed" in options and options["seed"] is None:
            options["seed"] = self.seed
        if options.get("split") is not None and options["split"].get("seed") is None:
            options["split"] = {**options["split"], "seed": self.seed}
        data = load_data(self.data.source, self.task_specs(), **options)
        return prepare_for_trials(data, self.data.loader, self.data.memory_budget_mb)

    def _backbone_facts(self) -> "BackboneFacts":
        return backbone_facts(
            self.backbone.name, self.in_channels(), json.dumps(self.backbone.options, sort_keys=True), self.input_size()
        )

    def stage_names(self) -> list[str]:
        return list(self._backbone_facts().stage_names)

    def input_size(self) -> tuple[int, int] | None:
        """``(height, width)`` of the images the models see; None where the source does not
        say before its data is read (a registered source without ``image_size``)."""
        return self.data.input_size()

    def num_stages(self) -> int:
        return len(self.stage_names())

    def in_channels(self) -> int:
        return self.data.channels_in()

    def task_specs(self) -> list[TaskSpec]:
        return [t.spec() for t in self.tasks]

    def split_point_range(self) -> tuple[int, int]:
        sp = self.space.split_point
        if sp is None:
            return 0, self.num_stages()
        return (sp, sp) if isinstance(sp, int) else (sp.low, sp.high)


@dataclass(frozen=True)
class BackboneFacts:
    stage_names: tuple[str, ...]
    last_spatial: bool
    error: str | None  # why a dry run at the experiment's input size failed


@functools.lru_cache(maxsize=32)
def backbone_facts(name: str, in_channels: int, options_json: str, size: tuple[int, int] | None) -> BackboneFacts:
    """Build the backbone once and push a zero image of ``size`` through it (validation only;
    no image when the size is not known yet)."""
    import torch

    stages = build_backbone(name, in_channels, **json.loads(options_json))
    error = None
    if size is None:
        return BackboneFacts(tuple(s.name for s in stages), stages[-1].spatial, error)
    x = torch.zeros(1, in_channels, *size)
    with torch.no_grad():
        for stage in stages:
            try:
                x = stage.module.eval()(x)
            except RuntimeError as exc:
                error = f"stage {stage.name!r} fails: {str(exc).splitlines()[0]}"
                break
    return BackboneFacts(tuple(s.name for s in stages), stages[-1].spatial, error)


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; raise :class:`ExperimentError` listing every problem.

    Relative paths in the file (data files, weights) are relative to the file.
    """
    path = Path(path)
    data, node = load_yaml(path)
    if not isinstance(data, dict):
        raise ExperimentError([f"{path}: the experiment must be a mapping of sections, got {type(data).__name__}."])
    return validate_experiment(data, base_dir=path.parent.resolve(), source=path, node=node)


def validate_experiment(
    data: dict[str, Any], base_dir: Path | None = None, source: Path | None = None, node: Any = None
) -> Experiment:
    """Validate an experiment given as a dict (what a YAML file parses to)."""
    try:
        exp = Experiment.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ExperimentError(_problems(exc, source, node, data)) from None
    return exp.model_copy(update={"source_path": source})


_TYPE_MISMATCH = ("_type", "_parsing")
_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_.\[\]]*): (.*)$", re.S)


def _problems(exc: ValidationError, source: Path | None, node: Any, data: Any) -> list[str]:
    """One ``file:line: field: message (got value)`` line per problem, union noise merged."""
    grouped: dict[tuple, list[dict]] = {}
    for err in exc.errors():
        loc = _yaml_loc(err["loc"], data, missing=err["type"] == "missing")
        match = _FIELD_PREFIX.match(err["msg"].removeprefix("Value error, "))
        if not loc and match:  # a cross-field check names its field first
            loc = tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", match.group(1)) if p)
            err = {**err, "msg": match.group(2)}
        if err["type"] == "unknown_source":  # data.source names no registered source
            loc = (*loc, "source")
            named = err["input"].get("source") if isinstance(err["input"], dict) else None
            got = f" {named!r}" if named is not None else ""
            allowed = ", ".join(repr(t) for t in known_sources())
            err = {**err, "type": "value_error", "msg": f"unknown or missing source{got}; allowed: {allowed}"}
        grouped.setdefault(loc, []).append(err)
    problems = []
    for loc, errors in grouped.items():
        specific = [e for e in errors if not e["type"].endswith(_TYPE_MISMATCH)] or errors
        # a field that is a keyword or a range ('auto' | {low, high}): a range given gets the range's errors
        specific = [e for e in specific if e["type"] != "literal_error"] or specific
        messages: list[str] = []
        for err in specific:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown field {loc[-1]!r}" + _allowed_fields(loc, data)
            if msg not in messages:
                messages.append(msg)
        text = " or ".join(messages)
        if specific[0]["type"] not in ("value_error", "missing", "extra_forbidden"):
            text += f" (got {specific[0].get('input')!r})"
        line = line_of(node, loc) if node is not None else None
        where = f"{source}:{line}: " if source and line else (f"{source}: " if source else "")
        problems.append(f"{where}{format_loc(loc)}: {text}")
    return problems


def _yaml_loc(loc: tuple, data: Any, missing: bool) -> tuple:
    """``loc`` without pydantic's union tags: only the keys and indices present in the input."""
    out = []
    for i, part in enumerate(loc):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif not (missing and i == len(loc) - 1):
            continue
        out.append(part)
    return tuple(out)


def _allowed_fields(loc: tuple, data: Any) -> str:
    if loc[:-1] == ("data",):  # the fields depend on the source
        return f"; allowed: {', '.join(data_fields(data['data'].get('source')))}"
    model = _model_at(Experiment, loc[:-1])
    if model is None:
        return ""
    fields = model.allowed_fields() if hasattr(model, "allowed_fields") else list(model.model_fields)
    return f"; allowed: {', '.join(f for f in fields if f != 'source_path')}"


def _model_at(model: Any, loc: tuple) -> Any:
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = _first_model(field.annotation)
        if model is None:
            return None
    return model


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None
