"""spaces: the experiment file (validated) and the search space it defines.

``load_experiment(path)`` validates a YAML experiment with errors naming file, line,
field and allowed values; ``define_space`` turns it into an Optuna define-by-run
function, conditional on the architecture family.
"""
from ._schema import Experiment, load_experiment, validate_experiment
from ._defaults import (
    Budget,
    affinity_cost,
    affinity_points,
    budget,
    budget_warning,
    searched_training,
    space_paths,
)
from ._search_config import BaselinesConfig, PrunerConfig, SamplerConfig, SearchConfig
from ._optuna_parts import PRUNERS, SAMPLERS, OptunaPart, register_pruner, register_sampler
from ._space_config import SEARCHED_FAMILIES, SpaceConfig
from ._training import BackboneConfig, TaskConfig, TrainConfig
from ._common import FloatRange, IntRange
from ._data import AugmentConfig
from ._sources import data_model, known_sources
from ._space import HIDDEN_PREFIX, SpaceSampler, define_space, fixed_config, optuna_point, simplex_weights
from ._yaml import ExperimentError

__all__ = [name for name in dir() if not name.startswith("_")]
