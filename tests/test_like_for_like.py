"""Like for like: a search that tunes the learning rate confirms the single-task networks at
the tuned rate beside its pick, on the pick's seeds, and the report says how much of the
pick's gain that tuned single-task reference recovers. Tables are built by hand (no
training): the configs and seeds the confirmation phase asks for, and the figures the
report shows, are known exactly."""
from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pytest
from scipy import stats

import mtl_models as mm
import reports
import spaces
from reports import ReportContext, RunData
from reports._results import result_row
from reports._sections._like_for_like import like_for_like
from search import confirm_configs

from conftest import tiny_experiment

INPUT = {"channels": 1, "height": 36, "width": 36, "mean": [0.0], "std": [1.0]}


def _experiment(lr_searched: bool) -> spaces.Experiment:
    space = {"families": ["hard_split", "cross_stitch"], "loss_weights": "simplex"}
    if lr_searched:
        space["lr"] = {"low": 0.001, "high": 0.03, "log": True}
    doc = tiny_experiment(space=space, confirm={"top_k": 2, "seeds": 2})
    return spaces.Experiment.model_validate(doc)


def _searched(fixed: dict[str, Any], rows: list[tuple[dict[str, Any], int, float]]) -> pd.DataFrame:
    """A search's results table: (config, seed, delta_m) per finished trial."""
    out = []
    for i, (config, seed, delta) in enumerate(rows):
        row = result_row(f"s{i}", "search", {**fixed, **config, "seed": seed}, {}, epochs_run=3,
                         status="finished", checkpoint=None)
        out.append({**row, "delta_m": delta})
    return pd.DataFrame(out)


BEST = {"family": "hard_split", "tree": "single", "split_point": 1, "loss_weights": {"left": 0.7, "right": 0.3}}
OTHER = {"family": "cross_stitch", "alpha_same": 0.9, "alpha_diff": 0.1, "lr_multiplier": 1.0}


@pytest.mark.parametrize("lr_searched", [True, False])
def test_confirm_adds_the_single_task_networks_at_the_best_configs_tuned_lr(lr_searched: bool) -> None:
    exp = _experiment(lr_searched)
    fixed = spaces.fixed_config(exp, INPUT)
    lr = 0.0071 if lr_searched else fixed["lr"]  # without a searched lr every config trains at train.lr
    table = _searched(fixed, [({**BEST, "lr": lr}, 0, 3.0), ({**OTHER, "lr": lr}, 0, 1.0),
                              ({**BEST, "lr": lr}, 1, 2.0)])  # the best config was proposed twice: seeds 0, 1
    configs = confirm_configs(exp, fixed, table)
    best_key = mm.config_key({**fixed, **BEST, "lr": lr})
    by_key: dict[str, list[int]] = {}
    for config in configs:
        by_key.setdefault(mm.config_key(config), []).append(config["seed"])
    assert by_key[best_key] == [2, 3]  # seeds 0 and 1 were its search runs
    references = [c for c in configs if c.get("reference") == reports.TUNED_SINGLE_TASK]
    if not lr_searched:
        assert references == [] and len(configs) == 3 * 2  # two shortlisted, the default; nothing else
        return
    assert [c["seed"] for c in references] == [2, 3]  # the best config's seeds: paired seed by seed
    expected = {**fixed, "family": "hard_split", "tree": "single", "split_point": 0, "lr": 0.0071,
                "loss_weighting": "static", "loss_weights": fixed["loss_weights"], "optimization": "joint"}
    assert {k: v for k, v in references[0].items() if k not in ("seed", "reference")} == {
        k: v for k, v in expected.items() if k != "seed"}
    assert len(configs) == 4 * 2
    # a hard split sharing nothing is the single-task networks: parameter for parameter
    single = [mm.count_parameters(mm.build_model({**fixed, "family": "single_task", "task": t})) for t in ("left", "right")]
    assert mm.count_parameters(mm.build_model({**references[0], "input": INPUT})) == sum(single) > 0


def test_a_shortlisted_config_that_is_the_reference_is_marked_not_trained_again() -> None:
    exp = _experiment(True)
    fixed = spaces.fixed_config(exp, INPUT)
    k0 = {"family": "hard_split", "tree": "single", "split_point": 0, "loss_weighting": "static",
          "loss_weights": fixed["loss_weights"], "optimization": "joint", "lr": 0.0071}
    table = _searched(fixed, [(k0, 0, 3.0), ({**OTHER, "lr": 0.002}, 0, 1.0)])
    configs = confirm_configs(exp, fixed, table)
    keys = [mm.config_key(c) for c in configs]
    assert not pd.Series(list(zip(keys, [c["seed"] for c in configs]))).duplicated().any()
    marked = [c for c in configs if c.get("reference") == reports.TUNED_SINGLE_TASK]
    assert [c["seed"] for c in marked] == [1, 2] and {mm.config_key(c) for c in marked} == {mm.config_key({**fixed, **k0})}
    assert len(configs) == 3 * 2  # the k=0 config, the other, the default


# --- the report ----------------------------------------------------------------------------

PICK_VAL = {1: 4.0, 2: 5.0, 3: 6.5}
PICK_TEST = {1: 3.0, 2: 4.5, 3: 5.0}
REF_VAL = {1: 1.0, 2: 3.0, 3: 2.5}
REF_TEST = {1: 0.5, 2: 2.0, 3: 3.0}


def _confirmed_table() -> pd.DataFrame:
    exp = _experiment(True)
    fixed = spaces.fixed_config(exp, INPUT)
    pick = {**fixed, **BEST, "lr": 0.0071}
    ref = {**fixed, "family": "hard_split", "tree": "single", "split_point": 0, "lr": 0.0071,
           "reference": reports.TUNED_SINGLE_TASK}
    rows = [{**result_row("b0", "baselines", {**fixed, "family": "single_task", "task": "left", "seed": 0}, {},
                          epochs_run=3, status="finished", checkpoint=None), "delta_m": None}]
    for name, config, val, test in (("p", pick, PICK_VAL, PICK_TEST), ("r", ref, REF_VAL, REF_TEST)):
        for seed in val:
            row = result_row(f"{name}{seed}", "confirm", {**config, "seed": seed}, {}, epochs_run=3,
                             status="finished", checkpoint=None)
            rows.append({**row, "delta_m": val[seed], "test_delta_m": test[seed]})
    return pd.DataFrame(rows)


def _paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float]:
    """The paired t interval written out: mean difference +- t_{0.975, n-1} s / sqrt(n)."""
    d = [a[s] - b[s] for s in sorted(a)]
    result = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    return sum(d) / len(d), result.low, result.high


def test_the_section_shows_how_much_of_the_gain_a_tuned_single_task_run_recovers() -> None:
    table = _confirmed_table()
    pick_key = table.loc[table["trial_id"] == "p1", "config_key"].iloc[0]
    ref = reports.tuned_reference(table, pick_key)
    assert ref is not None and ref.tuned == {"lr": 0.0071}  # what differs from the baselines
    assert ref.seeds == [1, 2, 3] and not ref.pick_is_reference
    val, test = ref.splits
    assert (val.split, test.split) == ("val", "test")
    assert test.reference.mean == pytest.approx(5.5 / 3) and test.pick.mean == pytest.approx(12.5 / 3)
    assert test.recovered_pct == pytest.approx(100 * 5.5 / 12.5)  # 44 %
    assert val.recovered_pct == pytest.approx(100 * 6.5 / 15.5)
    mean, low, high = _paired(PICK_TEST, REF_TEST)
    assert (test.difference.mean, test.difference.low, test.difference.high) == pytest.approx((mean, low, high))
    assert test.difference.mean == pytest.approx(7.0 / 3)
    # the section, rendered from a run whose pick is that config
    run = RunData(name="r", run_dir=None, results=table, curves=pd.DataFrame(), tasks=[])
    run.__dict__["pick"] = type("P", (), {"chosen": table[table["trial_id"] == "p1"].iloc[0]})()
    html = " ".join(b for b in like_for_like(ReportContext([run])) if isinstance(b, str))
    assert "44 %" in html and f"{mean:+.2f} % [{low:+.2f}, {high:+.2f}] (n=3)" in html
    assert "test (held out)" in html and "validation (selection)" in html
    assert "recovers 44 % of the pick's gain" in ref.sentence()


def test_no_reference_no_section() -> None:
    table = _confirmed_table()
    table = table[table["reference"].isna() & (table["phase"] == "confirm")]
    assert reports.tuned_reference(table, table["config_key"].iloc[0]) is None
    run = RunData(name="r", run_dir=None, results=table, curves=pd.DataFrame(), tasks=[])
    run.__dict__["pick"] = type("P", (), {"chosen": table.iloc[0]})()
    assert like_for_like(ReportContext([run])) == []


def test_a_pick_that_is_the_reference_says_so() -> None:
    """The quickstart's case: the pick is the single-task networks at the tuned learning rate."""
    table = _confirmed_table()
    ref_key = table.loc[table["trial_id"] == "r1", "config_key"].iloc[0]
    ref = reports.tuned_reference(table, ref_key)
    assert ref.pick_is_reference and [s.difference.mean for s in ref.splits] == [0.0, 0.0]
    assert ref.splits[1].recovered_pct == pytest.approx(100.0)
    assert "the pick is this reference itself" in ref.sentence() and "gains" not in ref.sentence()
