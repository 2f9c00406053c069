"""Ray Tune's ``OptunaSearch``, made exact about what the Optuna study learns.

Ray's searcher tells Optuna every ended trial as COMPLETE with its last value when it
has one, also trials that errored or were stopped early, and it reports whatever the
metric holds. Here:

- a trial that errored (an exception, a NaN/inf loss, out of memory) is told FAIL,
  so a NaN or a broken trial never becomes a best value;
- a trial stopped early by the pruner is told PRUNED (Optuna's samplers treat pruned
  trials by their intermediate values, as in a plain Optuna loop);
- intermediate values that are missing or not finite are not reported;
- with several objectives (``metric`` and ``mode`` lists: Delta_m and costs) a trial
  completes with one value per objective, and none is reported along the way;
- Optuna parameters that are only a means to a value (``_``-prefixed raw draws) stay
  in the study and out of the trial config;
- the study carries the pruner (``study.pruner``), so the scheduler's pruning
  decisions and the sampler (Hyperband's brackets with TPE) see the same study, and
  that study is what ``mtlsearch resume`` restores.

This relies on ``OptunaSearch``'s ``_ot_study``/``_ot_trials`` (Ray 2.58-2.60).
"""
from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from spaces import HIDDEN_PREFIX


def trial_outcome(
    result: dict | None, error: bool, metric: str | list[str]
) -> tuple[TrialState, float | list[float] | None]:
    """How an ended Tune trial enters the Optuna study: state and value (a list of
    values, one per objective, when ``metric`` is a list)."""
    result = result or {}
    if error or result.get("error"):
        return TrialState.FAIL, None
    epochs = result.get("epochs")  # the trial's budget, reported with every result
    if epochs is not None and int(result.get("epoch", 0)) < int(epochs):
        return TrialState.PRUNED, None
    values = [result.get(m) for m in (metric if isinstance(metric, list) else [metric])]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return TrialState.FAIL, None
    values = [float(v) for v in values]
    return TrialState.COMPLETE, values if isinstance(metric, list) else values[0]


class MTLOptunaSearch(OptunaSearch):
    """``OptunaSearch`` with exact trial outcomes and the pruner on its study (see module doc)."""

    def __init__(self, *args: Any, pruner: optuna.pruners.BasePruner | None = None, **kwargs: Any) -> None:
        self._pruner = pruner or optuna.pruners.NopPruner()
        self._reported: dict[str, set[int]] = {}
        self._orphans: list[int] = []  # Optuna _trial_ids
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        self._ot_study.pruner = self._pruner

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def optuna_trial(self, trial_id: str) -> optuna.Trial | None:
        """The Optuna trial behind a Tune trial (None for a trial this searcher did not suggest)."""
        return self._ot_trials.get(trial_id)

    def report(self, trial_id: str, result: dict) -> optuna.Trial | None:
        """Report a Tune result's metric to its Optuna trial, once per step.

        The step is the 0-based epoch (``training_iteration - 1``), as in Optuna's
        examples. Returns the Optuna trial, or None when there is nothing to report
        (unknown or ended trial, missing or non-finite value).
        """
        ot_trial = self._ot_trials.get(trial_id)
        if isinstance(self.metric, list):  # Optuna keeps no intermediate values for several objectives
            return None
        value = result.get(self.metric)
        if ot_trial is None or trial_id in self._completed_trials or value is None:
            return None
        if not math.isfinite(float(value)):
            return None
        step = int(result["training_iteration"]) - 1
        reported = self._reported.setdefault(trial_id, set())
        if step not in reported:  # the pruner scheduler reports first, then Tune calls us
            ot_trial.report(float(value), step)
            reported.add(step)
        return ot_trial

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        state, value = trial_outcome(result, error, self.metric)
        try:
            self._ot_study.tell(ot_trial, value, state=state)
        except ValueError as exc:  # told before the driver was killed: the study keeps that
            if "Cannot tell a" not in str(exc):
                raise
        self._completed_trials.add(trial_id)

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials and self._orphans:
            # hand an orphan out again: same number, same parameters, as if never interrupted
            self._ot_trials[trial_id] = optuna.Trial(self._ot_study, self._orphans.pop(0))
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            config = {k: v for k, v in config.items() if not k.startswith(HIDDEN_PREFIX)}
        return config

    def restore(self, checkpoint_path: str) -> None:
        """Restore the searcher (Tune's resume) and find the study's orphans: trials the
        killed driver asked for after its last snapshot, which no Tune trial runs. The
        next suggestions hand them out again (their numbers and parameters), so the study
        holds each proposal once; the runner fails any left over when the search ends."""
        super().restore(checkpoint_path)
        known = {t._trial_id for t in self._ot_trials.values()}
        running = self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        self._orphans = [t._trial_id for t in sorted(running, key=lambda t: t.number) if t._trial_id not in known]
