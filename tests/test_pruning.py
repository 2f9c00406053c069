"""The Optuna-pruner scheduler stops real Ray Tune trials the way the Optuna pruner says."""
from __future__ import annotations

import optuna
import pytest
from ray import tune

from search import OptunaPrunerScheduler


def curve_trainable(config: dict) -> None:
    for step in range(1, 6):
        tune.report({"score": config["level"] + 0.01 * step, "step": step})


def run(tmp_path, pruner, levels, exempt=None):
    scheduler = OptunaPrunerScheduler(pruner, metric="score", mode="max", exempt=exempt)
    tuner = tune.Tuner(
        curve_trainable,
        param_space={"level": tune.grid_search(levels)},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="prune", verbose=0),
    )
    results = tuner.fit()
    steps = {r.config["level"]: r.metrics["step"] for r in results}
    return steps, scheduler


def test_median_pruner_stops_the_trial_below_the_median(tmp_path, ray_local) -> None:
    steps, scheduler = run(tmp_path, optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1), [1.0, 0.8, 0.1, 0.9])
    # two startup trials; 0.1 is below their median but protected during its first epoch
    # (n_warmup_steps=1), so it stops after its second report; 0.9 stays above the median
    assert steps == {1.0: 5, 0.8: 5, 0.1: 2, 0.9: 5}
    states = [t.state for t in scheduler.study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == 1
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3
    assert list(scheduler.pruned.values()) == [2]


def test_successive_halving_pruner(tmp_path, ray_local) -> None:
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    steps, _ = run(tmp_path, pruner, [0.5, 0.2, 0.9])
    assert steps[0.5] == 5 and steps[0.9] == 5
    assert steps[0.2] == 2  # rung 0 is at step min_resource=1; worse than the first trial there


def test_exempt_trials_are_never_pruned(tmp_path, ray_local) -> None:
    pruner = optuna.pruners.ThresholdPruner(lower=0.5)
    steps, scheduler = run(tmp_path, pruner, [0.1, 0.2], exempt=lambda config: config["level"] == 0.1)
    assert steps == {0.1: 5, 0.2: 1}  # ThresholdPruner has no warm-up by default


def test_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        OptunaPrunerScheduler(optuna.pruners.NopPruner(), metric="x", mode="maximize")


def shaped_trainable(config: dict) -> None:
    for step, value in enumerate(config["curve"], 1):
        tune.report({"score": value, "step": step, "epoch": step, "epochs": len(config["curve"])})


def run_curves(tmp_path, pruner, curves):
    scheduler = OptunaPrunerScheduler(pruner, metric="score", mode="max")
    tuner = tune.Tuner(
        shaped_trainable,
        param_space={"curve": tune.grid_search(curves)},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="patient", verbose=0),
    )
    return [r.metrics["step"] for r in tuner.fit()], scheduler


def test_patient_pruner_keeps_a_transient_and_stops_a_trial_that_stays_behind(tmp_path, ray_local) -> None:
    from spaces._patient_pruner import PatientPruner

    flat_high, flat_low = [1.0] * 5, [0.8] * 5  # the two startup trials: median 0.9 at every step
    dip = [0.1, 0.95, 0.95, 0.95, 0.95]  # behind at its first epoch only
    behind = [0.1] * 5  # behind at every epoch
    late = [0.95, 0.95, 0.95, 0.95, 0.1]  # behind at its last epoch only: it ran its budget, nothing to stop
    pruner = PatientPruner(n_startup_trials=2, n_warmup_steps=0, patience=2)
    steps, scheduler = run_curves(tmp_path, pruner, [flat_high, flat_low, dip, behind])
    assert steps == [5, 5, 5, 2]  # the dip finished; the trial behind twice in a row stopped after 2 epochs
    steps, scheduler = run_curves(tmp_path / "late", PatientPruner(n_startup_trials=2, patience=1), [flat_high, flat_low, late])
    assert steps == [5, 5, 5] and scheduler.pruned == {}
    assert [t.state for t in scheduler.study.trials].count(optuna.trial.TrialState.COMPLETE) == 3
