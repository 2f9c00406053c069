"""The sections that say how the search runs: the Optuna sampler and pruner (validated
here, built in ``search``), trials and resources, the baselines, the confirmation phase,
the deploy pick and the task-affinity stage."""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PlainValidator,
    PositiveInt,
    model_validator,
)

from mtl_models import results_table as rt

from ._common import (
    _Strict,
)
from ._optuna_parts import PRUNERS, SAMPLERS, registered_name

# The default pruner's warm-up, a fraction of the trials' epochs. bench/pruning.py (searches run to
# the end on MultiMNIST, 5 epochs, and the 4-task digits, 8 epochs; the pruners replayed on their
# curves) found no warm-up epoch worth its cost once a trial must be behind twice in a row: 0.1
# gives none at 5 or 8 epochs, and keeps the first tenth of a longer schedule unjudged.
DEFAULT_WARMUP_FRACTION = 0.1


class PrunerConfig(BaseModel):
    """An Optuna pruner by name (:data:`PRUNERS`); other keys are its constructor's arguments
    (checked against its signature here; ``search.build_pruner`` builds it).

    ``warmup_fraction``: the warm-up as a fraction of the trials' epochs, for pruners with
    ``n_warmup_steps`` (the first ``floor(fraction x epochs)`` epochs of every trial are never
    judged); ``patient``, the default, takes ``DEFAULT_WARMUP_FRACTION`` unless given either.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Annotated[str, PlainValidator(lambda v: registered_name(PRUNERS, v))] = "patient"
    warmup_fraction: float | None = Field(None, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _known_arguments(self) -> "PrunerConfig":
        part = PRUNERS[self.name]
        self.__pydantic_extra__.update(part.validate("pruner", self.name, self.options()))
        params = part.arguments()
        if self.warmup_fraction is not None and "n_warmup_steps" not in params:
            raise ValueError(f"warmup_fraction: pruner {self.name!r} has no warm-up (n_warmup_steps); drop it")
        if self.warmup_fraction is not None and "n_warmup_steps" in self.options():
            raise ValueError("give n_warmup_steps (epochs) or warmup_fraction (of the epochs), not both")
        return self

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def warmup_steps(self, epochs: int) -> int | None:
        """The warm-up in epochs that ``warmup_fraction`` (or the default's) gives for ``epochs``;
        None when the pruner's own ``n_warmup_steps`` (given or its default) applies."""
        fraction = self.warmup_fraction
        if fraction is None and self.name == "patient" and "n_warmup_steps" not in self.options():
            fraction = DEFAULT_WARMUP_FRACTION
        return None if fraction is None else math.floor(fraction * epochs + 1e-9)


# Before samplers were declared by their constructors, every saved run recorded both of these
# for every sampler (a random sampler's n_startup_trials did nothing); such a run must still load.
_RECORDED_FOR_EVERY_SAMPLER = ("n_startup_trials", "population_size")


class SamplerConfig(BaseModel):
    """An Optuna sampler by name (:data:`SAMPLERS`: TPE, the default; NSGA-II, for several
    objectives; random); other keys are its constructor's arguments, checked against its
    signature, with our defaults where Optuna's differ (TPE: ``n_startup_trials: 5``,
    ``multivariate: true``), read as attributes (``sampler.n_startup_trials``).

    TPE handles one objective and several alike; ``n_startup_trials`` random trials
    come first. NSGA-II evolves ``population_size`` trials per generation. ``seed``: the
    sampler's, else the experiment's.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Annotated[str, PlainValidator(lambda v: registered_name(SAMPLERS, v))] = "tpe"
    seed: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _saved_before_samplers_were_declared(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name", "tpe") in SAMPLERS:
            takes = SAMPLERS[data.get("name", "tpe")].arguments()
            data = {k: v for k, v in data.items() if k not in _RECORDED_FOR_EVERY_SAMPLER or k in takes}
        return data

    @model_validator(mode="after")
    def _known_arguments(self) -> "SamplerConfig":
        part = SAMPLERS[self.name]
        given = part.validate("sampler", self.name, self.options(), skip=("seed",))
        self.__pydantic_extra__.clear()
        self.__pydantic_extra__.update(part.defaults_for(given))
        return self

    def options(self) -> dict[str, Any]:
        """The constructor's arguments besides ``seed``: those given, and our defaults."""
        return dict(self.model_extra or {})

    def resolved_seed(self, default_seed: int) -> int:
        """``seed``, else the experiment's."""
        return self.seed if self.seed is not None else default_seed


class ResourcesConfig(_Strict):
    """Resources of one trial; a fractional ``gpu`` packs several trials on one GPU."""

    cpu: PositiveFloat = 1.0
    gpu: NonNegativeFloat = 0.0


OBJECTIVE_DIRECTIONS = rt.OBJECTIVE_DIRECTIONS  # Delta_m to maximise, or a cost to minimise
OBJECTIVES = tuple(OBJECTIVE_DIRECTIONS)


class SearchConfig(_Strict):
    """How the search runs: trials, concurrency, sampler, pruner, resources, retries.

    ``objectives``: what the search optimises: ``[delta_m]`` (default), or Delta_m and
    costs to minimise (``params``, ``flops``, ``latency_ms_b1``, ``latency_ms_bN``),
    a multi-objective search whose result is a Pareto front. Optuna's pruners judge
    one objective, so a multi-objective search does not prune (the default pruner
    turns to ``nop``; naming another is an error).
    ``max_failures``: how often a trial is restarted from its last checkpoint after its
    worker or node dies (or it raises).
    """

    objectives: list[Literal[OBJECTIVES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [rt.DELTA_M], min_length=1
    )
    num_trials: PositiveInt = 20
    max_concurrent: PositiveInt | None = None
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    resources: ResourcesConfig = ResourcesConfig()
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    max_failures: NonNegativeInt = 2

    @model_validator(mode="before")
    @classmethod
    def _saved_before_the_fault_plugin(cls, data: Any) -> Any:
        """A run saved before fault injection left the product recorded ``inject_faults: {}``."""
        if isinstance(data, dict) and data.get("inject_faults") == {}:
            data = {k: v for k, v in data.items() if k != "inject_faults"}
        return data

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
        elif SAMPLERS[self.sampler.name].multi_objective_only:
            others = [name for name, part in SAMPLERS.items() if not part.multi_objective_only]
            raise ValueError(
                f"sampler: {self.sampler.name} is for multi-objective searches; with one objective use {' or '.join(others)}"
            )
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

    ``columns``: ``joint`` (default) trains each seed's single-task networks as one model
    of ``T`` columns that share nothing (one trial per seed, proven equal to separate
    training: ``tests/test_joint_baselines.py``); ``separate`` trains one trial per task
    and seed, for columns that must differ. A fixed loss weighting other than ``static``
    or a ``grad_clip`` (which would couple the columns) trains them separately anyway.
    """

    single_task: Literal[True] = True
    seeds: PositiveInt = 3
    ensemble: bool = True
    ensemble_size: PositiveInt | None = None
    columns: Literal["joint", "separate"] = "joint"


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

    The phase races (``search.study._racing``): seed by seed, and a config that at least two
    seeds show worse than the current leader beyond the noise (its paired interval on
    validation Delta_m below 0, Bonferroni over the looks and the configs) trains no more
    seeds; ``race_alpha`` bounds the chance that the truly best config is stopped (0: no
    config stops). The references (the default, the tuned single-task networks) never stop.
    """

    top_k: NonNegativeInt = 3
    seeds: NonNegativeInt = 3
    max_configs: PositiveInt = 6
    default: bool = True
    race_alpha: float = Field(0.05, ge=0.0, lt=0.5)

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
    baselines; every ``every`` steps (10, as TAG's reference code) each task's lookahead
    update (the trial optimiser's own step) of each stage is tried and every task's loss
    measured again (``mtlsearch affinity`` does the same alone). The branch trees this
    implies (at most ``max_groups`` groups a stage; a split only beyond noise) join the
    search as hard splits with ``tree: affinity`` and are tried first; the report shows
    the matrices and how the trees fared.
    """

    epochs: NonNegativeInt = 0
    every: PositiveInt = 10
    max_groups: PositiveInt | None = None

    @property
    def enabled(self) -> bool:
        return self.epochs > 0


