"""A median pruner that waits for a trial to be consistently behind, not behind once."""
from __future__ import annotations

import math

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


class PatientPruner(optuna.pruners.BasePruner):
    """Prune a trial that is behind the completed trials at each of its last ``patience`` steps.

    Optuna's median pruner (Optuna's ``MedianPruner``, after Google Vizier's median stopping
    rule, Golovin et al. 2017) stops a trial the first time its best value so far is below
    the completed trials' median at that step. Early values are transients: a network
    whose regression task starts with a large error, or whose columns are still mixing
    (cross-stitch), sits far below at epoch 1 and can end among the best
    (``bench/pruning.py`` measures how often). This pruner compares the same way, step by
    step against the completed trials' ``percentile`` at that step (their rank, not
    their scale), but stops a trial only when it was behind at **each** of its last
    ``patience`` reported steps after ``n_warmup_steps``: a dip it recovers from does not
    stop it; a trial that stays behind does.

    Keyword-only arguments (the signature is the schema, as Optuna's pruners):
    ``percentile`` (as Optuna's ``PercentilePruner``: a step's bar keeps the top
    ``percentile`` % of the completed trials; 50: the median, 75: only the bottom quarter
    is behind), ``patience`` (consecutive steps behind), ``n_startup_trials`` (no pruning
    before this many trials completed), ``n_warmup_steps`` (steps of each trial never
    judged; ``search.build_pruner`` derives it from the schedule), ``n_min_trials``
    (completed trials that reported the step, at least, for it to count).
    """

    def __init__(
        self,
        *,
        percentile: float = 50.0,
        patience: int = 2,
        n_startup_trials: int = 4,
        n_warmup_steps: int = 0,
        n_min_trials: int = 1,
    ) -> None:
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"Percentile must be between 0 and 100 inclusive but got {percentile}.")
        if patience < 1:
            raise ValueError(f"Patience must be at least 1 but got {patience}.")
        if n_startup_trials < 0:
            raise ValueError(f"Number of startup trials cannot be negative but got {n_startup_trials}.")
        if n_warmup_steps < 0:
            raise ValueError(f"Number of warmup steps cannot be negative but got {n_warmup_steps}.")
        if n_min_trials < 1:
            raise ValueError(f"Number of trials for pruning must be at least 1 but got {n_min_trials}.")
        self._percentile = percentile
        self._patience = patience
        self._n_startup_trials = n_startup_trials
        self._n_warmup_steps = n_warmup_steps
        self._n_min_trials = n_min_trials

    def prune(self, study: "optuna.study.Study", trial: FrozenTrial) -> bool:
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not completed or len(completed) < self._n_startup_trials:
            return False
        steps = sorted(s for s in trial.intermediate_values if s >= self._n_warmup_steps)
        if len(steps) < self._patience:
            return False
        maximize = study.direction == StudyDirection.MAXIMIZE
        for step in steps[-self._patience:]:
            value = trial.intermediate_values[step]
            if math.isnan(value):
                continue  # a NaN is behind (and a diverged trial ends by itself)
            others = [t.intermediate_values[step] for t in completed if step in t.intermediate_values]
            others = [v for v in others if not math.isnan(v)]
            if len(others) < self._n_min_trials:
                return False
            threshold = float(np.percentile(others, 100 - self._percentile if maximize else self._percentile))
            if (value >= threshold) if maximize else (value <= threshold):
                return False
        return True
