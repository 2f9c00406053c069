"""search: Ray Tune trials sampled by Optuna and stopped by an Optuna pruner.

``run_experiment`` trains the baselines and runs the search; ``collect_results``
builds the results table from a run directory; ``OptunaPrunerScheduler`` lets any
Optuna pruner stop Tune trials.
"""
from ._baselines import baseline_configs, compose_ensemble
from ._progress import ProgressPrinter
from ._pruning import OptunaPrunerScheduler
from ._optuna import MTLOptunaSearch, trial_outcome
from ._cluster import init_ray
from ._hooks import TRIAL_HOOKS, register_trial_hook
from ._log import log_to_stdout
from ._plan import format_plan, plan
from ._phases import Baselines, SearchInterrupted, confirm_configs, run_baselines, run_confirm, run_search
from ._runner import RunResult, resume_experiment, run_experiment
from ._table import collect_results, write_results
from ._trainable import OBJECTIVE, train_trial

__all__ = [name for name in dir() if not name.startswith("_")]
