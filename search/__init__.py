"""search: Ray Tune trials sampled by Optuna and stopped by an Optuna pruner.

``run_experiment`` trains the baselines and runs the search; ``collect_results``
builds the results table from a run directory; ``OptunaPrunerScheduler`` lets any
Optuna pruner stop Tune trials.

The public names are loaded when first used (PEP 562): ``mtlsearch run`` starts Ray
before torch, Tune, Optuna and the report's libraries are imported, and imports them
while Ray starts (``search._start``); ``import search`` alone imports none of them.
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "baseline_configs": "_baselines", "compose_ensemble": "_baselines",
    "ProgressPrinter": "_progress",
    "OptunaPrunerScheduler": "_pruning",
    "MTLOptunaSearch": "_optuna", "trial_outcome": "_optuna",
    "init_ray": "_cluster",
    "TRIAL_HOOKS": "_hooks", "register_trial_hook": "_hooks",
    "log_to_stdout": "_log",
    "format_plan": "_plan", "plan": "_plan",
    "Baselines": "_phases", "SearchInterrupted": "_phases", "confirm_configs": "_phases", "run_baselines": "_phases",
    "run_confirm": "_phases", "run_search": "_phases",
    "RacingConfigs": "_racing", "race_stops": "_racing",
    "RunResult": "_runner", "resume_experiment": "_runner", "run_experiment": "_runner",
    "collect_results": "_table", "write_results": "_table",
    "OBJECTIVE": "_trainable", "train_trial": "_trainable",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
