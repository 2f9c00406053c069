"""The Optuna sampler and pruner an experiment names (validated by ``spaces``, built here).

Both are built one way, from their registry entry (``spaces.SAMPLERS``, ``spaces.PRUNERS``):
the class with the experiment's arguments and our defaults; what differs is only what the
run supplies (a sampler's seed; a pruner's warm-up and Hyperband's budget, from the epochs).
"""
from __future__ import annotations

import optuna

from spaces import PRUNERS, SAMPLERS, PrunerConfig, SamplerConfig


def build_sampler(config: SamplerConfig, default_seed: int) -> optuna.samplers.BaseSampler:
    """The named sampler with its arguments (TPE: multivariate, ``n_startup_trials`` random
    first), seeded with ``config.seed`` or else ``default_seed`` (the experiment's)."""
    part = SAMPLERS[config.name]
    options = config.options()
    if "seed" in part.arguments():
        options["seed"] = config.resolved_seed(default_seed)
    return part.cls(**options)


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
    return PRUNERS[config.name].cls(**options)
