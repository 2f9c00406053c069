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
from reports._stats import Reference, cyclic_compositions, ensemble_reference, metric_floor_var, paired_interval, welch

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
    assert words[-1] == "No config beats single-task beyond the noise at this budget (validation)."


def test_one_baseline_seed_means_unknown_noise() -> None:
    results = table({"acc": [0.8], "err": [0.1]}, {"c": [(0.9, 0.05), (0.91, 0.05)]})
    pick = reports.deploy_pick(results, TASKS)
    est = pick.table.iloc[0]["estimates"]["delta_m"]
    assert not est.measured and est.verdict == 0 and "noise unknown" in est.text()
    assert "noise is unknown" in pick.sentences(lambda row: row["config_key"])[0]


# --- issue 23: paired intervals, noise floor, ensemble noise, best of k, the test split -------------------


def test_paired_interval_matches_scipy_ttest_rel() -> None:
    a, b = [1.0, 2.5, 1.7, 3.1, 2.2], [0.4, 2.0, 1.5, 2.2, 1.9]
    mean, low, high = paired_interval([x - y for x, y in zip(a, b)])
    expected = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert mean == pytest.approx(np.mean(a) - np.mean(b))
    assert (low, high) == pytest.approx((expected.low, expected.high), rel=1e-12)


def test_a_config_against_a_reference_with_the_same_seeds_is_paired() -> None:
    """Pick and default share seeds: the seed effect cancels, so the paired interval is the ttest_rel one
    (and a constant +1 gain over a large seed effect is beyond the noise), Welch otherwise."""
    results = table(SINGLE, {"c": [(0.85, 0.1)]})
    noise = reports.BaselineNoise(results, TASKS)
    seed_effect = [5.0, -3.0, 1.0, 8.0]
    default = [e + 0.1 * i for i, e in enumerate(seed_effect)]
    pick = [d + 1.0 + 0.01 * (-1) ** i for i, d in enumerate(default)]
    est = noise.vs_reference(pick, Reference(tuple(default), seeds=(1, 2, 3, 4)), seeds=[1, 2, 3, 4])
    expected = stats.ttest_rel(pick, default).confidence_interval(0.95)
    assert est.paired and (est.low, est.high) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert est.verdict == 1
    unpaired = noise.vs_reference(pick, Reference(tuple(default), seeds=(5, 6, 7, 8)), seeds=[1, 2, 3, 4])
    welch_ci = stats.ttest_ind(pick, default, equal_var=False).confidence_interval(0.95)
    assert not unpaired.paired and (unpaired.low, unpaired.high) == pytest.approx((welch_ci.low, welch_ci.high), rel=1e-12)
    assert unpaired.verdict == 0


def test_a_config_with_the_baselines_seeds_is_paired_with_them() -> None:
    """Single-task seeds 0, 1, 2 and a config's runs with seeds 0, 1, 2: per-seed Delta_m differences."""
    rows = table(SINGLE, {})
    noise = reports.BaselineNoise(rows, TASKS)
    base = [np.mean([100 * (a - 0.80) / 0.80, -100 * (e - 0.11) / 0.11]) for a, e in zip(SINGLE["acc"], SINGLE["err"])]
    deltas = [b + 2.0 + d for b, d in zip(base, [0.1, -0.2, 0.05])]
    est = noise.vs_single(deltas, seeds=[0, 1, 2])
    expected = stats.ttest_rel(deltas, base).confidence_interval(0.95)
    assert est.paired and (est.low, est.high) == pytest.approx((expected.low, expected.high), rel=1e-9)
    assert not noise.vs_single(deltas, seeds=[7, 8, 9]).paired


def test_tied_baseline_seeds_never_give_a_zero_wide_interval() -> None:
    """Tied seeds and one config run: no measured variance. Without label counts the noise is unknown
    (NaN, verdict 0), never [m, m]; with them, the noise floor alone gives a normal interval."""
    tied = {"acc": [0.80, 0.80, 0.80], "err": [0.10, 0.10, 0.10]}
    results = table(tied, {"c": [(0.81, 0.10)]})
    assert welch(1.0, [(0.0, 2), (0.0, 3)]) != (1.0, 1.0)
    unknown = reports.BaselineNoise(results, TASKS).vs_single([1.0])
    assert not unknown.measured and unknown.verdict == 0
    n = {"acc": 400, "err": 300}
    noise = reports.BaselineNoise(results, TASKS, labelled=n)
    est = noise.vs_single([0.625])  # acc +1.25 %, err 0
    p = (0.8 * 400 + 2) / 404  # Agresti-Coull
    acc_floor = p * (1 - p) / 404 * (100 / 0.8) ** 2
    err_floor = (math.sqrt(math.pi / 2 - 1) * 0.10) ** 2 / 300 * (100 / 0.10) ** 2
    half = stats.norm.ppf(0.975) * math.sqrt((acc_floor + err_floor) / 4)
    assert (est.low, est.high) == pytest.approx((0.625 - half, 0.625 + half), rel=1e-9)
    assert est.high - est.low > 0.5


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_mae_noise_floor_is_the_standard_error_of_half_normal_errors(sigma: float) -> None:
    n = 250
    mae = stats.halfnorm(scale=sigma).mean()
    expected = stats.halfnorm(scale=sigma).std() / math.sqrt(n)
    assert math.sqrt(metric_floor_var("mae", mae, n)) == pytest.approx(expected, rel=1e-9)


def test_rmse_and_accuracy_noise_floors_match_simulation() -> None:
    rng = np.random.default_rng(0)
    n, sigma = 200, 1.5
    rmse = np.sqrt((rng.normal(0, sigma, (20000, n)) ** 2).mean(axis=1))
    assert math.sqrt(metric_floor_var("rmse", sigma, n)) == pytest.approx(rmse.std(), rel=0.03)
    p, m = 0.9, 500
    binomial = stats.binom(m, p).std() / m
    assert math.sqrt(metric_floor_var("accuracy", p, m)) == pytest.approx(binomial, rel=0.02)
    assert metric_floor_var("accuracy", 1.0, m) > 0  # a perfect score still has a floor


def test_ensemble_compositions_are_cyclic_windows_of_the_seed_members() -> None:
    assert cyclic_compositions(3, 2) == [[0, 1], [1, 2], [2, 0]]
    assert cyclic_compositions(2, 2) == [[0, 1]]  # S = K: one composition


@pytest.mark.parametrize("seeds, size", [(3, 2), (5, 2), (5, 4)])
def test_ensemble_variance_is_unbiased_for_additive_members(seeds: int, size: int) -> None:
    """Each member shifts the ensemble by its effect / K: the mean over the S cyclic compositions
    has variance sigma^2 / S; the estimate from the compositions' spread must average to it."""
    rng = np.random.default_rng(1)
    sigma = 2.0
    windows = cyclic_compositions(seeds, size)
    estimates = []
    for _ in range(20000):
        effects = rng.normal(0, sigma, seeds)
        values = [effects[w].mean() for w in windows]
        ref = ensemble_reference(values, seeds, size)
        estimates.append(ref.mean_var)
    assert ref.dof == seeds - 1
    assert np.mean(estimates) == pytest.approx(sigma**2 / seeds, rel=0.03)


def test_the_interval_against_the_ensemble_covers_the_true_difference() -> None:
    """3 seeds, ensembles of 2: a config's 3 runs against the ensemble's 3 compositions. The naive
    spread of overlapping compositions would under-cover; the corrected one holds ~95 %."""
    rng = np.random.default_rng(2)
    noise = reports.BaselineNoise(table(SINGLE, {}), TASKS)
    windows = cyclic_compositions(3, 2)
    covered = 0
    draws = 2000
    for _ in range(draws):
        effects = rng.normal(0, 3.0, 3)
        ensemble = ensemble_reference([effects[w].mean() for w in windows], 3, 2)
        runs = list(rng.normal(1.0, 0.5, 3))
        est = noise.vs_reference(runs, ensemble)
        covered += est.low <= 1.0 <= est.high
    assert 0.93 <= covered / draws <= 0.99


def two_split_table(val: dict[str, list[tuple[float, float]]], test: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    """Like ``table``, with the same runs' test metrics (baselines on test: SINGLE shifted by 0)."""
    results = table(SINGLE, val)
    for task, values in SINGLE.items():
        column = f"test/{task}/{'accuracy' if task == 'acc' else 'mae'}"
        results.loc[results["task"] == task, column] = values
    for key, runs in test.items():
        rows = results.index[results["config_key"] == key]
        results.loc[rows, "test/acc/accuracy"] = [a for a, _ in runs]
        results.loc[rows, "test/err/mae"] = [e for _, e in runs]
    return reports.add_delta_m(results, split="test", column="test_delta_m")


def test_the_verdict_is_judged_on_test_and_selection_shown_on_validation() -> None:
    """'lucky' is clearly better on validation but exactly single-task on test: the pick (chosen on
    validation) must be judged not distinguishable, with its validation figure as the selection figure."""
    val = {"lucky": [(0.95, 0.05), (0.96, 0.05), (0.95, 0.06)], "plain": [(0.85, 0.09), (0.86, 0.09), (0.85, 0.1)]}
    test = {"lucky": [(0.80, 0.11), (0.82, 0.11), (0.78, 0.11)], "plain": [(0.80, 0.11), (0.81, 0.11), (0.79, 0.11)]}
    pick = reports.deploy_pick(two_split_table(val, test), TASKS)
    assert pick.split == "test" and pick.chosen["config_key"] == "lucky"
    assert pick.chosen["estimates"]["delta_m"].verdict == 1 and pick.chosen["estimates"]["delta_m"].split == "val"
    judged = pick.judged()["delta_m"]
    assert judged.split == "test" and judged.verdict == 0 and judged.mean == pytest.approx(0.0, abs=1e-9)
    words = pick.sentences(lambda row: row["config_key"])
    assert "judged on the test split" in words[0]
    assert words[1].startswith(f"Deploy candidate: lucky, Delta_m on test {judged.text()} over 3 seeds")
    assert "not distinguishable from single-task" in words[1] and "selection figure, validation: +" in words[1]
    assert words[-1] == "No config beats single-task beyond the noise at this budget (test)."


def test_without_a_test_split_the_verdict_says_it_is_on_the_selection_split() -> None:
    results = table(SINGLE, {"good": [(0.95, 0.05), (0.96, 0.05), (0.95, 0.06)]})
    pick = reports.deploy_pick(results, TASKS)
    words = pick.sentences(lambda row: row["config_key"])
    assert pick.split == "val" and "judged on that same validation split" in words[0] and "optimistic" in words[0]
    assert "Delta_m on validation" in words[1] and "beats single-task beyond the noise" in words[1]


@pytest.mark.parametrize("k", [1, 2, 4])
def test_the_best_of_k_is_bonferroni_corrected(k: int) -> None:
    configs = {f"c{i}": [(0.85 - 0.01 * i, 0.1), (0.86 - 0.01 * i, 0.1), (0.84 - 0.01 * i, 0.105)] for i in range(k)}
    results = table(SINGLE, configs)
    pick = reports.deploy_pick(results, TASKS)
    assert pick.k == k and pick.level == pytest.approx(1 - 0.05 / k)
    est = pick.chosen["estimates"]["delta_m"]
    runs = results[results["config_key"] == "c0"]["delta_m"].tolist()
    acc = [100 * (v - 0.80) / 0.80 for v in SINGLE["acc"]]
    err = [-100 * (v - 0.11) / 0.11 for v in SINGLE["err"]]
    parts = [(np.var(runs, ddof=1) / 3, 2), (np.var(acc, ddof=1) / 12, 2), (np.var(err, ddof=1) / 12, 2)]
    se2 = sum(v for v, _ in parts)
    dof = se2**2 / sum(v**2 / d for v, d in parts)
    half = stats.t.ppf(1 - 0.025 / k, dof) * math.sqrt(se2)
    assert (est.low, est.high) == pytest.approx((np.mean(runs) - half, np.mean(runs) + half), rel=1e-9)
    assert "k = %d" % k in pick.sentences(lambda row: row["config_key"])[0]


def test_export_picks_the_run_nearest_the_mean_not_the_luckiest() -> None:
    results = table(SINGLE, {"c": [(0.95, 0.10), (0.84, 0.10), (0.82, 0.10)]})
    row = reports.deploy_pick(results, TASKS).chosen
    deltas = results.set_index("trial_id").loc[row["trial_ids"], "delta_m"]
    assert row["best_trial_id"] == deltas.idxmax() == "c0"
    assert row["trial_id"] == (deltas - deltas.mean()).abs().idxmin() == "c1"


def test_the_ensemble_is_compared_as_the_mean_of_its_compositions() -> None:
    """Three single-task seeds, ensembles of two: the run's own composition (0) in the table, 1 and 2 in
    the evaluations cache; the pick is compared with their mean, the variance corrected for overlap."""
    from reports._evaluate import composition_table

    results = table(SINGLE, {"c": [(0.84, 0.10), (0.85, 0.099), (0.83, 0.101)]})
    own = {"trial_id": "ensemble", "phase": "baselines", "family": "ensemble", "ensemble_size": 2, "status": "finished",
           "config_key": "ens", "val/acc/accuracy": 0.82, "val/err/mae": 0.105, "config": json.dumps(CONFIG)}
    results = reports.add_delta_m(pd.concat([results, pd.DataFrame([own])], ignore_index=True))
    cache = pd.DataFrame([
        {"trial_id": f"ensemble/{i}", "checkpoint": "", "split": "val", "task": task, "metric": metric, "value": v}
        for i, (acc, err) in ((1, (0.81, 0.104)), (2, (0.83, 0.107)))
        for task, metric, v in (("acc", "accuracy", acc), ("err", "mae", err))
    ])
    compositions = composition_table(cache, results)
    assert list(compositions["composition"]) == [0, 1, 2]
    pick = reports.deploy_pick(results, TASKS, compositions=compositions)
    assert pick.ensemble_compositions == 3
    est = pick.chosen["estimates"]["ensemble"]
    ens = [np.mean([100 * (a - 0.80) / 0.80, -100 * (e - 0.11) / 0.11]) for a, e in ((0.82, 0.105), (0.81, 0.104), (0.83, 0.107))]
    runs = results[results["config_key"] == "c"]["delta_m"].tolist()
    assert est.mean == pytest.approx(np.mean(runs) - np.mean(ens))
    parts = [(np.var(runs, ddof=1) / 3, 2), (np.var(ens, ddof=1) * (3 - 1) / (3 - 2) * 2 / 3, 2)]
    se2 = sum(v for v, _ in parts)
    half = stats.t.ppf(0.975, se2**2 / sum(v**2 / d for v, d in parts)) * math.sqrt(se2)  # k = 1: 95 %
    assert (est.low, est.high) == pytest.approx((est.mean - half, est.mean + half), rel=1e-9)
    assert "the mean of its 3 compositions" in " ".join(pick.sentences(lambda row: row["config_key"]))


def test_a_further_reference_among_the_confirmation_rows_is_compared_paired() -> None:
    """A hook for other references (e.g. a tuned single-task run): rows with ``reference`` 'tuned'."""
    results = table(SINGLE, {"c": [(0.90, 0.09), (0.86, 0.10), (0.88, 0.095)], "t": [(0.88, 0.10), (0.84, 0.11), (0.86, 0.105)]})
    results["reference"] = np.where(results["config_key"] == "t", "tuned", None)
    pick = reports.deploy_pick(results, TASKS)
    assert pick.chosen["config_key"] == "c"
    vs = pick.chosen["estimates"]["tuned"]
    by_seed = results.set_index(["config_key", "seed"])["delta_m"]
    diffs = [by_seed[("c", s)] - by_seed[("t", s)] for s in (10, 11, 12)]
    assert vs.paired and vs.mean == pytest.approx(np.mean(diffs))
    assert "Against the reference 'tuned'" in " ".join(pick.sentences(lambda row: row["config_key"]))
