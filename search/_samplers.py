"""The Optuna sampler and pruner an experiment names (validated by ``spaces``, built here)."""
from __future__ import annotations

import optuna

from spaces import PrunerConfig, SamplerConfig
from spaces._search_config import PRUNER_CLASSES


def build_sampler(config: SamplerConfig, default_seed: int) -> optuna.samplers.BaseSampler:
    """TPE (multivariate, ``n_startup_trials`` random first), NSGA-II or random, seeded with
    ``config.seed`` or else ``default_seed`` (the experiment's)."""
    seed = config.resolved_seed(default_seed)
    if config.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=config.population_size, seed=seed)
    return optuna.samplers.TPESampler(n_startup_trials=config.n_startup_trials, seed=seed, multivariate=True)


def build_pruner(config: PrunerConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    """The named pruner with the experiment's arguments; Hyperband's ``max_resource`` defaults
    to the trials' epochs, and a warm-up given as a fraction of the schedule
    (``warmup_fraction``, the default pruner's by default) becomes ``n_warmup_steps``."""
    options = config.options()
    if config.name == "hyperband":
        options.setdefault("max_resource", max_epochs)
    warmup = config.warmup_steps(max_epochs)
    if warmup is not None:
        options["n_warmup_steps"] = warmup
    return PRUNER_CLASSES[config.name](**options)
