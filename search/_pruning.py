"""A Ray Tune scheduler whose early-stopping decisions are made by an Optuna pruner."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import optuna
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

if TYPE_CHECKING:
    from ray.tune.experiment import Trial


class OptunaPrunerScheduler(FIFOScheduler):
    """Stop Tune trials when an Optuna pruner (median, successive halving, ...) says so.

    Each Tune trial is mirrored by a trial of a private in-memory Optuna study that
    holds only what pruners read: the trial's intermediate values (the ``metric``
    of each report, at step ``training_iteration - 1``, i.e. the 0-based epoch as in
    Optuna's examples, so ``n_warmup_steps=k`` protects a trial's first ``k``
    epochs) and its final state. After each result
    the scheduler reports the value and asks ``trial.should_prune()``, i.e. the
    pruner's own ``prune(study, trial)``; a ``True`` stops the Tune trial. Pruned
    trials enter the study as PRUNED and finished ones as COMPLETE, exactly as in a
    plain Optuna optimisation loop, so each pruner keeps its documented behaviour.

    Being separate from the searcher, it works with any Tune search algorithm. Trials
    for which ``exempt(config)`` is true (baselines) are never pruned.
    """

    def __init__(
        self,
        pruner: optuna.pruners.BasePruner,
        metric: str,
        mode: str = "max",
        exempt: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
        self._metric = metric
        self._mode = mode
        self._pruner = pruner
        self._exempt = exempt or (lambda config: False)
        self._study = optuna.create_study(
            direction="maximize" if mode == "max" else "minimize",
            pruner=pruner,
            sampler=optuna.samplers.RandomSampler(seed=0),
        )
        self._trials: dict[str, optuna.Trial] = {}
        self._finished: set[str] = set()
        self.pruned: dict[str, int] = {}  # trial id -> reports it made before it was pruned

    @property
    def study(self) -> optuna.Study:
        return self._study

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # metric and mode are the scheduler's own; a searcher's do not override them

    def _optuna_trial(self, trial_id: str) -> optuna.Trial:
        if trial_id not in self._trials:
            self._trials[trial_id] = self._study.ask()
        return self._trials[trial_id]

    def on_trial_result(self, tune_controller: Any, trial: "Trial", result: dict) -> str:
        value = result.get(self._metric)
        if self._exempt(trial.config) or value is None or trial.trial_id in self._finished:
            return TrialScheduler.CONTINUE
        value = float(value)
        if not math.isfinite(value):
            return TrialScheduler.CONTINUE
        step = int(result[TRAINING_ITERATION]) - 1
        ot_trial = self._optuna_trial(trial.trial_id)
        ot_trial.report(value, step)
        if ot_trial.should_prune():
            self._study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            self._finished.add(trial.trial_id)
            self.pruned[trial.trial_id] = step + 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _finish(self, trial: "Trial", state: optuna.trial.TrialState, value: float | None = None) -> None:
        if trial.trial_id in self._finished or trial.trial_id not in self._trials:
            return
        self._finished.add(trial.trial_id)
        if value is None or not math.isfinite(value):
            state, value = optuna.trial.TrialState.FAIL, None
        self._study.tell(self._trials[trial.trial_id], value, state=state)

    def on_trial_complete(self, tune_controller: Any, trial: "Trial", result: dict) -> None:
        value = (result or {}).get(self._metric)
        self._finish(trial, optuna.trial.TrialState.COMPLETE, None if value is None else float(value))

    def on_trial_error(self, tune_controller: Any, trial: "Trial") -> None:
        self._finish(trial, optuna.trial.TrialState.FAIL)

    def on_trial_remove(self, tune_controller: Any, trial: "Trial") -> None:
        self._finish(trial, optuna.trial.TrialState.FAIL)

    def debug_string(self) -> str:
        return f"Using Optuna pruner {type(self._pruner).__name__} on {self._metric!r} ({self._mode})."
