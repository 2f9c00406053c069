"""The default pruner judges trials that stay behind, not early transients: its decisions on
constructed curves against completed trials with known per-step medians, and its warm-up
derived from the trials' epochs."""
from __future__ import annotations

import optuna
import pytest

from search.study._samplers import build_pruner
from spaces import PrunerConfig
from spaces._patient_pruner import PatientPruner
from spaces._search_config import DEFAULT_WARMUP_FRACTION

# Four completed trials, 6 steps each; at every step their values are 0, 1, 2, 3 (+ the
# step), so the median at step s is 1.5 + s.
COMPLETED = [[k + s for s in range(6)] for k in range(4)]


def _decisions(pruner: optuna.pruners.BasePruner, curve: list[float]) -> list[bool]:
    """The pruner's answer after each step of ``curve`` (stopping at the first True)."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for values in COMPLETED:
        study.add_trial(optuna.trial.create_trial(
            params={"x": 0.5}, distributions=dist, value=values[-1],
            intermediate_values=dict(enumerate(values)),
        ))
    trial = study.ask()
    answers = []
    for step, value in enumerate(curve):
        trial.report(value, step)
        answers.append(trial.should_prune())
        if answers[-1]:
            break
    return answers


MEDIAN = [1.5 + s for s in range(6)]
DIP = [MEDIAN[0] - 900, MEDIAN[1] - 50, MEDIAN[2] + 1, MEDIAN[3] + 1, MEDIAN[4] + 1, MEDIAN[5] + 1]  # e.g. a regression's early MAE
ONE_DIP = [MEDIAN[0] + 1, MEDIAN[1] + 1, MEDIAN[2] - 5, MEDIAN[3] + 1, MEDIAN[4] + 1, MEDIAN[5] + 1]
BEHIND = [m - 1 for m in MEDIAN]
LATE = [MEDIAN[0] + 1, MEDIAN[1] + 1, MEDIAN[2] + 1, MEDIAN[3] - 1, MEDIAN[4] - 1, MEDIAN[5] - 1]


@pytest.mark.parametrize(
    "curve, warmup, patience, expected",
    [
        # behind at steps 0 and 1 only: the warm-up (step 0) and then one step behind is not enough
        (DIP, 1, 2, [False] * 6),
        # with no warm-up it is behind at steps 0 and 1: two in a row, stopped after step 1
        (DIP, 0, 2, [False, True]),
        # one step behind in the middle, ahead before and after: never stopped
        (ONE_DIP, 0, 2, [False] * 6),
        # patience 1 stops at that one step, as the median rule would
        (ONE_DIP, 0, 1, [False, False, True]),
        # always behind: stopped as soon as it has two judged steps after the warm-up
        (BEHIND, 1, 2, [False, False, True]),
        (BEHIND, 2, 3, [False, False, False, False, True]),
        # behind from step 3 on: stopped after steps 3 and 4
        (LATE, 1, 2, [False, False, False, False, True]),
        # exactly at the median is not behind
        (MEDIAN, 0, 1, [False] * 6),
    ],
)
def test_patient_pruner_stops_trials_that_stay_behind_not_transients(
    curve: list[float], warmup: int, patience: int, expected: list[bool]
) -> None:
    pruner = PatientPruner(n_startup_trials=4, n_warmup_steps=warmup, patience=patience)
    assert _decisions(pruner, curve) == expected


def test_the_median_pruner_stops_the_transient_the_patient_one_keeps() -> None:
    """The same dip under Optuna's median pruner with a 1-step warm-up: stopped at step 1."""
    assert _decisions(optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1), DIP) == [False, True]


@pytest.mark.parametrize(
    "percentile, expected", [(50.0, [False, False, True]), (75.0, [False] * 6), (25.0, [False, False, True])]
)
def test_percentile_sets_how_far_behind(percentile: float, expected: list[bool]) -> None:
    # Optuna's convention: ``percentile`` p keeps the top p % (maximising). 0.9 + s is below the
    # median (1.5 + s) but above the values' 25th percentile (0.75 + s), the bar of p = 75.
    curve = [m - 0.6 for m in MEDIAN]
    assert _decisions(PatientPruner(percentile=percentile, n_warmup_steps=1, patience=2), curve) == expected


def test_no_pruning_before_enough_trials_completed() -> None:
    assert _decisions(PatientPruner(n_startup_trials=5, patience=1), BEHIND) == [False] * 6


@pytest.mark.parametrize(
    "config, epochs, warmup",
    [
        (PrunerConfig(), 5, 0),  # the default: floor(0.1 x 5)
        (PrunerConfig(), 8, 0),
        (PrunerConfig(), 10, 1),
        (PrunerConfig(), 29, 2),
        (PrunerConfig(), 50, 5),
        (PrunerConfig(name="patient", warmup_fraction=0.5), 5, 2),  # floor(2.5)
        (PrunerConfig(name="patient", warmup_fraction=0.3), 10, 3),  # 0.3 x 10 is 3 (not 2.9999...)
        (PrunerConfig(name="patient", n_warmup_steps=3), 10, 3),  # given in epochs: as given
        (PrunerConfig(name="median", warmup_fraction=0.4), 8, 3),
        (PrunerConfig(name="median"), 8, 0),  # Optuna's own default when not asked for a fraction
        (PrunerConfig(name="median", n_warmup_steps=1), 8, 1),
    ],
)
def test_the_warm_up_is_a_fraction_of_the_schedule(config: PrunerConfig, epochs: int, warmup: int) -> None:
    pruner = build_pruner(config, epochs)
    assert pruner._n_warmup_steps == warmup


def test_the_default_pruner_is_the_patient_one() -> None:
    assert DEFAULT_WARMUP_FRACTION == 0.1
    pruner = build_pruner(PrunerConfig(), 5)
    assert isinstance(pruner, PatientPruner) and pruner._patience == 2 and pruner._percentile == 50.0
    assert pruner._n_startup_trials == 4


@pytest.mark.parametrize(
    "options, message",
    [
        ({"name": "patient", "warmup_fraction": 0.3, "n_warmup_steps": 2}, "not both"),
        ({"name": "successive_halving", "warmup_fraction": 0.3}, "has no warm-up"),
        ({"name": "patient", "warmup_fraction": 1.0}, "less than 1"),
        ({"name": "patient", "patiences": 2}, "unknown argument"),
    ],
)
def test_pruner_config_refuses_what_it_cannot_build(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PrunerConfig(**options)
