"""search: Ray Tune trials sampled by Optuna and stopped by an Optuna pruner.

``run_experiment`` trains the baselines and runs the search; ``collect_results``
builds the results table from a run directory; ``OptunaPrunerScheduler`` lets any
Optuna pruner stop Tune trials.

The names are imported when first used (PEP 562), so ``mtlsearch --version``, ``--help``
and shell completion answer without importing torch and Ray, and ``mtlsearch run`` starts
Ray before torch, Tune, Optuna and the report's libraries are imported, importing them
while Ray starts (``search.run._start``).
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

# the module paths from before search/ was grouped (issue 26) still import: runs saved before load
from . import _aliases  # noqa: F401

_PUBLIC = {
    ".trial._baselines": ("baseline_configs", "compose_ensemble"),
    ".results._progress": ("ProgressPrinter",),
    ".study._pruning": ("OptunaPrunerScheduler",),
    ".study._racing": ("RacingConfigs", "race_stops"),
    ".study._optuna": ("MTLOptunaSearch", "table_attrs", "trial_outcome"),
    ".base._cluster": ("init_ray",),
    ".trial._hooks": ("TRIAL_HOOKS", "register_trial_hook"),
    ".base._log": ("log_to_console", "log_to_stdout"),
    ".run._plan": ("format_plan", "plan"),
    ".run._phases": ("Baselines", "SearchInterrupted", "run_baselines", "run_confirm", "run_search"),
    ".run._confirm": ("confirm_configs",),
    ".run._runner": ("RunResult", "resume_experiment", "run_experiment"),
    ".study._study": ("DEPLOY_PICK_ATTR", "record_deploy_pick"),
    ".results._table": ("collect_results", "write_results"),
    ".trial._trainable": ("OBJECTIVE", "train_trial"),
}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        if name.startswith("_") and not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}"):
            return importlib.import_module(f"{__name__}.{name}")  # search.run._runner: a submodule
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
