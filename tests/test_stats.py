"""Seed noise and intervals: the numbers that rank configs, checked against scipy and by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mtl_models as mm
import reports
from reports._stats import welch

TASKS = [mm.TaskSpec("acc", "classification", 10), mm.TaskSpec("err", "regression", 1)]
CONFIG = {"tasks": [t.to_dict() for t in TASKS], "epochs": 2}


def table(single: dict[str, list[float]], configs: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    """A results table: single-task seeds per task, and per config key its runs' (acc, err)."""
    rows = []
    for task, values in single.items():
        spec = next(t for t in TASKS if t.name == task)
        for k, v in enumerate(values):
            rows.append({"trial_id": f"{task}{k}", "phase": "baselines", "family": "single_task", "task": task,
                         "ensemble_member": k, "seed": k, "status": "finished", "config_key": f"st-{task}",
                         reports.metric_column(spec): v, "config": json.dumps(CONFIG)})
    for key, runs in configs.items():
        for k, (acc, err) in enumerate(runs):
            rows.append({"trial_id": f"{key}{k}", "phase": "confirm", "family": "hard_split", "task": None,
                         "ensemble_member": None, "seed": 10 + k, "status": "finished", "config_key": key,
                         "val/acc/accuracy": acc, "val/err/mae": err, "params": 100, "config": json.dumps(CONFIG)})
    return reports.add_delta_m(pd.DataFrame(rows))


SINGLE = {"acc": [0.80, 0.82, 0.78], "err": [0.10, 0.12, 0.11]}


def test_welch_interval_matches_scipy() -> None:
    a, b = [1.0, 2.5, 1.7, 3.1], [0.2, 0.9, -0.4]
    mean = np.mean(a) - np.mean(b)
    low, high = welch(mean, [(np.var(a, ddof=1) / 4, 3), (np.var(b, ddof=1) / 3, 2)])
    expected = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (low, high) == pytest.approx((expected.low, expected.high), rel=1e-12)


def test_terms_and_delta_m_of_a_config_over_its_seeds() -> None:
    results = table(SINGLE, {"good": [(0.90, 0.08), (0.88, 0.09)]})
    noise = reports.BaselineNoise(results, TASKS)
    assert noise.mean == pytest.approx({"acc": 0.80, "err": 0.11})
    assert noise.term(TASKS[0], 0.88) == pytest.approx(10.0)  # +10 % accuracy
    assert noise.term(TASKS[1], 0.099) == pytest.approx(10.0)  # 10 % lower error is +10
    summary = reports.config_summary(results[results["phase"] == "confirm"], TASKS, noise)
    row = summary.iloc[0]
    runs = results[results["config_key"] == "good"]["delta_m"].tolist()
    assert row["seeds"] == 2 and row["delta_m"] == pytest.approx(np.mean(runs))
    assert row["delta_m_std"] == pytest.approx(np.std(runs, ddof=1))
    terms = [row["term/acc"], row["term/err"]]
    assert row["delta_m"] == pytest.approx(np.mean(terms))  # Delta_m is the mean of the terms
    assert row["contribution/acc"] + row["contribution/err"] == pytest.approx(row["delta_m"])
    # the interval: the config's runs against the baseline mean (tasks independent), Welch dof
    acc_terms = [100 * (v - 0.80) / 0.80 for v in SINGLE["acc"]]
    err_terms = [-100 * (v - 0.11) / 0.11 for v in SINGLE["err"]]
    parts = [(np.var(runs, ddof=1) / 2, 1), (np.var(acc_terms, ddof=1) / 12, 2), (np.var(err_terms, ddof=1) / 12, 2)]
    assert (row["delta_m_low"], row["delta_m_high"]) == pytest.approx(welch(np.mean(runs), parts))
    assert row["delta_m_low"] < row["delta_m"] < row["delta_m_high"]


def test_one_run_borrows_the_noise_of_one_single_task_run() -> None:
    results = table(SINGLE, {"once": [(0.84, 0.10)]})
    noise = reports.BaselineNoise(results, TASKS)
    est = noise.vs_single([float(results.loc[results["config_key"] == "once", "delta_m"].iloc[0])])
    assert est.approximate and est.runs == 1 and est.std is None
    acc_var = np.var([100 * (v - 0.80) / 0.80 for v in SINGLE["acc"]], ddof=1)
    err_var = np.var([-100 * (v - 0.11) / 0.11 for v in SINGLE["err"]], ddof=1)
    assert noise.run_var() == pytest.approx((acc_var + err_var) / 4)
    half = (est.high - est.low) / 2
    se = math.sqrt(noise.run_var() + (acc_var / 3 + err_var / 3) / 4)
    assert se * stats.t.ppf(0.975, 100) < half < se * stats.t.ppf(0.975, 2)  # dof between the parts'


def test_a_clear_gain_is_beyond_the_noise_and_a_small_one_is_not() -> None:
    tight = {"acc": [0.800, 0.801, 0.799], "err": [0.100, 0.101, 0.099]}
    results = table(tight, {"clear": [(0.90, 0.08), (0.91, 0.081), (0.905, 0.079)],
                            "tiny": [(0.80, 0.101), (0.802, 0.099), (0.799, 0.100)]})
    noise = reports.BaselineNoise(results, TASKS)
    summary = reports.config_summary(results[results["phase"] == "confirm"], TASKS, noise).set_index("config_key")
    assert summary.loc["clear", "verdict_single"] == 1 and summary.loc["clear", "delta_m_low"] > 0
    assert summary.loc["tiny", "verdict_single"] == 0 and summary.loc["tiny", "delta_m_low"] < 0 < summary.loc["tiny", "delta_m_high"]


@pytest.mark.parametrize("max_task_drop, picked", [("noise", "balanced"), (None, "lopsided"), (50.0, "lopsided"),
                                                   (5.0, "balanced")])
def test_the_pick_drops_no_task_beyond_the_limit(max_task_drop, picked: str) -> None:
    """One task dominating: 'lopsided' gains a lot on err but loses accuracy beyond its noise."""
    tight = {"acc": [0.800, 0.801, 0.799], "err": [0.100, 0.101, 0.099]}
    results = table(tight, {"lopsided": [(0.70, 0.02), (0.71, 0.021), (0.70, 0.019)],
                            "balanced": [(0.82, 0.095), (0.821, 0.094), (0.819, 0.096)]})
    pick = reports.deploy_pick(results, TASKS, max_task_drop)
    assert pick.table.iloc[0]["config_key"] == "lopsided"  # best by Delta_m, from err alone
    assert pick.chosen["config_key"] == picked
    lopsided = pick.table.set_index("config_key").loc["lopsided"]
    assert lopsided["contribution/err"] > 30 and lopsided["contribution/acc"] < -5  # visible at a glance
    if picked == "balanced":
        assert lopsided["dropped"] == ["acc"]
        words = " ".join(pick.sentences(lambda row: row["config_key"]))
        assert "The best by Delta_m, lopsided" in words and "loses acc" in words


def test_nothing_distinguishable_is_said_in_words() -> None:
    results = table(SINGLE, {"same": [(0.80, 0.11), (0.81, 0.112)]})
    words = reports.deploy_pick(results, TASKS).sentences(lambda row: row["config_key"])
    assert "not distinguishable from single-task at this budget" in " ".join(words)
    assert words[-1] == "No config beats single-task beyond the noise at this budget."


def test_one_baseline_seed_means_unknown_noise() -> None:
    results = table({"acc": [0.8], "err": [0.1]}, {"c": [(0.9, 0.05), (0.91, 0.05)]})
    pick = reports.deploy_pick(results, TASKS)
    est = pick.table.iloc[0]["estimates"]["delta_m"]
    assert not est.measured and est.verdict == 0 and "noise unknown" in est.text()
    assert "noise is unknown" in pick.sentences(lambda row: row["config_key"])[0]
