"""A Ray Tune scheduler whose early-stopping decisions are made by an Optuna pruner."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import optuna
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from ._optuna import MTLOptunaSearch


class OptunaPrunerScheduler(FIFOScheduler):
    """Stop Tune trials when an Optuna pruner (median, successive halving, ...) says so.

    After each result the scheduler reports the ``metric`` to the trial's Optuna
    trial, at step ``training_iteration - 1`` (the 0-based epoch, as in Optuna's
    examples, so ``n_warmup_steps=k`` protects a trial's first ``k`` epochs), and asks
    ``trial.should_prune()``, i.e. the pruner's own ``prune(study, trial)``; ``True``
    stops the Tune trial. Every pruner thus keeps its documented behaviour.

    With ``searcher`` (the search's :class:`MTLOptunaSearch`) the Optuna trials are
    the sampler's own: one study holds the sampler's history and the pruner's, it is
    persisted with the searcher, and it comes back whole when a search is resumed;
    the searcher tells how each trial ended. A trial's last epoch (``epoch`` equal to the
    ``epochs`` its results carry) is not judged: it ran its budget, stopping it saves
    nothing. Without one (any other Tune searcher) the
    scheduler keeps a private in-memory study and tells it itself. Trials for which
    ``exempt(config)`` is true are never pruned.
    """

    def __init__(
        self,
        pruner: optuna.pruners.BasePruner,
        metric: str,
        mode: str = "max",
        exempt: Callable[[dict[str, Any]], bool] | None = None,
        searcher: "MTLOptunaSearch | None" = None,
    ) -> None:
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
        self._metric = metric
        self._mode = mode
        self._pruner = pruner
        self._exempt = exempt or (lambda config: False)
        self._searcher = searcher
        self._own_study = None
        if searcher is None:
            self._own_study = optuna.create_study(
                direction="maximize" if mode == "max" else "minimize",
                pruner=pruner,
                sampler=optuna.samplers.RandomSampler(seed=0),
            )
        self._own_trials: dict[str, optuna.Trial] = {}
        self._ended: set[str] = set()
        self.pruned: dict[str, int] = {}  # trial id -> reports it made before it was pruned

    @property
    def study(self) -> optuna.Study:
        return self._searcher.study if self._searcher is not None else self._own_study

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # metric and mode are the scheduler's own; a searcher's do not override them

    def _report(self, trial: "Trial", result: dict) -> optuna.Trial | None:
        if self._searcher is not None:
            return self._searcher.report(trial.trial_id, result)
        value = result.get(self._metric)
        if value is None or not math.isfinite(float(value)):
            return None
        if trial.trial_id not in self._own_trials:
            self._own_trials[trial.trial_id] = self._own_study.ask()
        ot_trial = self._own_trials[trial.trial_id]
        ot_trial.report(float(value), int(result[TRAINING_ITERATION]) - 1)
        return ot_trial

    def on_trial_result(self, tune_controller: Any, trial: "Trial", result: dict) -> str:
        if self._exempt(trial.config) or trial.trial_id in self._ended:
            return TrialScheduler.CONTINUE
        ot_trial = self._report(trial, result)
        if ot_trial is None or _last_epoch(result) or not ot_trial.should_prune():
            return TrialScheduler.CONTINUE
        self._ended.add(trial.trial_id)
        self.pruned[trial.trial_id] = int(result[TRAINING_ITERATION])
        if self._own_study is not None:
            self._own_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
        return TrialScheduler.STOP

    def _end(self, trial: "Trial", result: dict | None, failed: bool) -> None:
        if trial.trial_id in self._ended:
            return
        self._ended.add(trial.trial_id)
        ot_trial = self._own_trials.get(trial.trial_id)
        if self._own_study is None or ot_trial is None:
            return  # the searcher tells its study how the trial ended
        value = (result or {}).get(self._metric)
        if failed or value is None or not math.isfinite(float(value)):
            self._own_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        else:
            self._own_study.tell(ot_trial, float(value))

    def on_trial_complete(self, tune_controller: Any, trial: "Trial", result: dict) -> None:
        self._end(trial, result, failed=False)

    def on_trial_error(self, tune_controller: Any, trial: "Trial") -> None:
        self._end(trial, None, failed=True)

    def on_trial_remove(self, tune_controller: Any, trial: "Trial") -> None:
        self._end(trial, None, failed=True)

    def debug_string(self) -> str:
        return f"Using Optuna pruner {type(self._pruner).__name__} on {self._metric!r} ({self._mode})."


def _last_epoch(result: dict) -> bool:
    """Whether ``result`` is a trial's last epoch (``epoch`` reaches its ``epochs``, when reported)."""
    budget = result.get("epochs")
    return budget is not None and int(result.get("epoch") or result.get(TRAINING_ITERATION, 0)) >= int(budget)
