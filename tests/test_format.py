"""One language for numbers and structures: the formats every view uses, the structure in
words, the merged "best by objective" rows and the per-class rank test. No run needed."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from scipy import stats

import mtl_models as mm
from mtl_models import _format as fmt
from reports._select import Objective
from reports._sections._per_class import rank_correlation
from reports._sections._summary import merge_objectives
from reports._stats import Estimate


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        ((1.904, -3.921, 7.714), {}, "+1.90 % [-3.92, +7.71]"),  # the example
        ((0.09,), {}, "+0.09 %"),  # no bounds given: no interval
        ((-0.000173,), {}, "0.00 %"),  # rounds to zero: no sign, never "-0.00"
        ((-2.56e-05, -0.5, 0.49), {}, "0.00 % [-0.50, +0.49]"),
        ((-12.345, math.nan, math.nan), {}, "-12.35 % [noise unknown]"),  # bounds given but unmeasured
        ((3.0,), {"interval": True}, "+3.00 % [noise unknown]"),
        ((3.0, 1.0, 5.0), {"approximate": True}, "+3.00 % [+1.00, +5.00] \u2248"),
        ((math.nan,), {}, "n/a"),
        ((None,), {}, "n/a"),
    ],
)
def test_delta_m_reads_the_same_everywhere(args: tuple, kwargs: dict, expected: str) -> None:
    assert fmt.delta(*args, **kwargs) == expected


def test_an_estimate_is_written_as_delta_m() -> None:
    est = Estimate(mean=1.904, low=-3.921, high=7.714, runs=3)
    assert est.text() == mm.format_estimate(est) == mm.format_estimate(est.as_dict()) == "+1.90 % [-3.92, +7.71]"
    one = Estimate(mean=0.5, low=-1.0, high=2.0, runs=1, approximate=True)
    assert mm.format_estimate(one) == "+0.50 % [-1.00, +2.00] \u2248" and one.text() == "+0.50 % [-1.00, +2.00]"


@pytest.mark.parametrize(
    "value, metric, std, expected",
    [
        (0.87349, "accuracy", 0.01234, "0.873 \u00b1 0.012"),  # fractions: three decimals
        (1.0, "miou", None, "1.000"),
        (0.0004, "f1", None, "0.000"),
        (12.3456, "mae", 0.41234, "12.35 \u00b1 0.4123"),  # label units: four significant digits
        (2.56e-05, "rmse", None, "0.0000256"),  # never 2.56e-05
        (65540.0, "mae", None, "65540"),
        (math.nan, "accuracy", None, "n/a"),
    ],
)
def test_metrics_are_written_by_their_scale(value: float, metric: str, std: float | None, expected: str) -> None:
    assert fmt.metric(value, metric, std) == expected


@pytest.mark.parametrize(
    "function, value, expected",
    [
        (lambda v: fmt.count(v), 6.554e04, "65,540"),  # select printed 6.554e+04
        (lambda v: fmt.count(v, compact=True), 65540, "65.5 k"),
        (lambda v: fmt.count(v, compact=True), 1_234_567, "1.23 M"),
        (lambda v: fmt.count(v, compact=True), 812, "812"),
        (fmt.flops, 2.345e9, "2.35 G"),
        (fmt.flops, 456e6, "456 M"),
        (fmt.ms, 1.2345, "1.23 ms"),
        (fmt.ms, 0.0123456, "0.0123 ms"),
        (fmt.rate, 3e-4, "3e-4"),
        (fmt.rate, 1.5e-3, "1.5e-3"),
        (fmt.rate, 0.01, "0.01"),
        (fmt.plain, 123456.0, "123456"),
        (fmt.plain, -0.000123456, "-0.0001235"),
        (fmt.signed, -0.004, "0.00"),
        (fmt.signed, 2.5, "+2.50"),
    ],
)
def test_counts_costs_and_rates(function, value: float, expected: str) -> None:
    assert function(value) == expected


def _config(**extra) -> dict:
    tasks = [{"name": "a", "kind": "classification", "classes": 3}, {"name": "b", "kind": "classification", "classes": 3},
             {"name": "c", "kind": "regression"}]
    return {"backbone": {"name": "small_cnn"}, "input": {"channels": 3, "height": 16, "width": 16}, "tasks": tasks,
            **extra}


@pytest.mark.parametrize(
    "extra, expected",
    [
        # small_cnn's default stages: conv1..conv4
        ({"family": "hard_split", "split_point": 0}, "shares nothing: one network per task"),
        ({"family": "hard_split", "split_point": 2}, "shares conv1-conv2, then one branch per task"),
        ({"family": "hard_split", "split_point": 1}, "shares conv1, then one branch per task"),
        ({"family": "hard_split", "split_point": 4}, "shares every stage (conv1-conv4), then one head per task"),
        ({"family": "hard_split", "split_point": 1, "task_groups": {"a": 0, "b": 0, "c": 1},
          "group_split_points": {"0": 3, "1": 1}}, "shares conv1; {a,b} share conv2-conv3; then one branch per task"),
        ({"family": "hard_split", "split_points": {"a": 1, "b": 3, "c": 0}},  # c leaves at once; b alone after conv1
         "{a,b} share conv1; then one branch per task"),
        ({"family": "cross_stitch", "alpha_same": 0.9, "alpha_diff": 0.05, "cross_stitch_stages": [1, 3]},
         "one network (column) per task; cross-stitch units mixing the task columns after conv2, conv4"),
        ({"family": "cross_stitch", "alpha_same": 0.9, "alpha_diff": 0.05},
         "one network (column) per task; cross-stitch units mixing the task columns after conv1-conv4"),
        ({"family": "mtan", "mtan_stages": [0, 1]}, "one shared network; each task attends to its features after conv1-conv2"),
        ({"family": "ensemble", "ensemble_size": 2}, "2 single-task networks per task, their outputs averaged"),
    ],
)
def test_structures_in_words(extra: dict, expected: str) -> None:
    assert mm.describe_structure(_config(**extra)) == expected


def test_structure_words_follow_the_backbones_stage_names() -> None:
    config = _config(family="hard_split", split_point=2, backbone={"name": "small_cnn", "options": {"widths": [4, 8, 8]}})
    names = mm.stage_names("small_cnn", 3, widths=[4, 8, 8])
    assert mm.describe_structure(config) == f"shares {names[0]}-{names[1]}, then one branch per task"


def test_best_by_several_objectives_is_one_row() -> None:
    rows = {t: pd.Series({"trial_id": t}) for t in ("t1", "t2")}
    objectives = [Objective("best Δm", rows["t1"]), Objective("best a accuracy", rows["t1"]),
                  Objective("best b accuracy", rows["t2"]), Objective("fewest parameters", rows["t1"])]
    merged = merge_objectives(objectives)
    assert [(label, row["trial_id"]) for label, row in merged] == [
        ("best Δm; best a accuracy; fewest parameters", "t1"), ("best b accuracy", "t2")
    ]


def test_rank_correlation_is_spearmans_with_its_p_value() -> None:
    gains = pd.DataFrame({
        "task": ["x"] * 5 + ["y"] * 5 + ["z"] * 2,
        "train_count": [10, 20, 30, 40, 50] * 2 + [1, 2],
        "gain_points": [1.0, 3.0, 2.0, 5.0, 4.0] + [5.0, 4.0, 3.0, 2.0, 1.0] + [1.0, 2.0],  # z: too few classes
    })
    (task_x, rho_x, p_x, n_x), (task_y, rho_y, p_y, n_y) = rank_correlation(gains)
    # x: rank differences 0,1,1,1,1 -> rho = 1 - 6 * 4 / (5 * 24) = 0.8; its t = rho sqrt((n-2)/(1-rho^2)), 3 dof
    t = 0.8 * math.sqrt(3 / (1 - 0.64))
    assert (task_x, n_x) == ("x", 5) and rho_x == pytest.approx(0.8, abs=1e-12)
    assert p_x == pytest.approx(2 * stats.t.sf(t, 3), rel=1e-9) and p_x > 0.05  # 0.104: no evidence at n=5
    assert (task_y, rho_y, n_y) == ("y", pytest.approx(-1.0), 5) and p_y < 1e-6


def test_every_built_in_task_kind_says_what_its_output_means() -> None:
    specs = [mm.TaskSpec.from_dict(d) for d in (
        {"name": "c", "kind": "classification", "classes": 4}, {"name": "b", "kind": "binary"},
        {"name": "m", "kind": "multilabel", "classes": 5}, {"name": "r", "kind": "regression"},
        {"name": "s", "kind": "segmentation", "classes": 3}, {"name": "d", "kind": "dense_regression"})]
    meanings = {s.kind: s.kind_impl.describe_output(s) for s in specs}
    assert meanings["classification"].startswith("(B, 4) logits") and "softmax" in meanings["classification"]
    assert meanings["binary"].startswith("(B, 1) logit") and "sigmoid" in meanings["binary"]
    assert meanings["multilabel"].startswith("(B, 5) logits") and "sigmoid" in meanings["multilabel"]
    assert meanings["regression"].startswith("(B, 1) predicted values in the labels' own units")
    assert meanings["segmentation"].startswith("(B, 3, H, W) per-pixel logits")
    assert meanings["dense_regression"].startswith("(B, 1, H, W) per-pixel predicted values")
    assert all("see that kind's documentation" not in m for m in meanings.values())


def test_a_regression_output_is_in_the_labels_units() -> None:
    """What the card says of a regression output: the head maps back to the labels' units."""
    config = _config(family="hard_split", split_point=1)
    config["tasks"] = [{"name": "r", "kind": "regression"}]
    model = mm.build_model(config).eval()
    scale = next(m for m in model.modules() if type(m).__name__ == "TargetScale")
    scale.fit(torch.tensor([1000.0, 1010.0, 990.0]))
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 16, 16))["r"]
    assert abs(float(out.mean()) - 1000.0) < 50  # near the labels' mean, not near 0


def test_an_experiment_may_name_its_licence() -> None:
    import spaces

    base = {"data": {"source": "multimnist", "n_train": 8, "n_val": 8}, "tasks": [{"name": "left", "kind": "classification", "classes": 10},
                                                                             {"name": "right", "kind": "classification", "classes": 10}],
            "backbone": {"name": "small_cnn"}}
    assert spaces.Experiment.model_validate(base).license == "unspecified"
    assert spaces.Experiment.model_validate({**base, "license": "Apache-2.0"}).license == "Apache-2.0"
    assert spaces.Experiment.model_validate({**base, "licence": "CC-BY-4.0"}).license == "CC-BY-4.0"
    with pytest.raises(ValueError, match="license"):
        spaces.Experiment.model_validate({**base, "license": ""})
