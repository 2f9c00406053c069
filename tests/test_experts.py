"""MMoE and CGC/PLE as families of the search: what each task's loss reaches (GradNorm's layer,
the aggregators' parameters), training under GradNorm (export and reload: test_families.py), and
one tiny Ray Tune search whose trials of both land in the table, the plan and the report."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import mtl_models as mm
import reports
import spaces
from search import format_plan, run_experiment

from conftest import make_config, make_tasks, random_data, tiny_experiment

CONFIGS = {
    "mmoe": {"mmoe_experts": 2},
    "cgc": {"ple_shared": 1, "ple_specific": 2},
    "ple@3": {"ple_levels": 3},
    "ple@3 libmtl": {"ple_levels": 3, "ple_shared_gate": False},
    "ple@2 pooled": {"ple_levels": 2, "ple_gate": "pooled"},
}


def _build(case: str, num_tasks: int = 3) -> mm.MultiTaskModel:
    torch.manual_seed(0)
    family = case.split("@")[0].split(" ")[0].replace("cgc", "ple")
    return mm.build_model(make_config(family, make_tasks(num_tasks, ("classification", "regression")), **CONFIGS[case]))


@pytest.mark.parametrize("case", list(CONFIGS))
def test_each_task_declares_what_its_loss_reaches(case: str) -> None:
    """``task_parameters()`` (read from the structure) is what autograd reaches from each task's
    output; GradNorm's ``shared_parameters()`` is reached by every task."""
    model = _build(case)
    params = list(model.parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    out = model(torch.rand(4, 3, 8, 8))
    declared = model.task_parameters()
    for t in model.task_names:
        grads = torch.autograd.grad(out[t].pow(2).mean(), params, retain_graph=True, allow_unused=True)
        reached = [names[id(p)] for p, g in zip(params, grads) if g is not None]
        assert [names[id(p)] for p in declared[t]] == reached, t
        assert {id(p) for p in model.shared_parameters()} <= {id(p) for p in declared[t]}
    assert model.shared_parameters()
    if case == "ple@3":  # the paper's shared gate carries every level-0 expert to every task
        assert all(names[id(p)] in [names[id(q)] for q in declared["t0"]] for p in model.levels[0].specific["t1"].parameters())
    if case == "ple@3 libmtl":  # LibMTL's: a task never reaches another task's experts
        assert not {id(p) for p in model.levels[0].specific["t1"].parameters()} & {id(p) for p in declared["t0"]}


@pytest.mark.parametrize("case", ["mmoe", "ple@3"])
def test_trains_under_gradnorm(case: str) -> None:
    model = _build(case, num_tasks=2)
    tasks = make_tasks(2, ("classification", "regression"))
    config = make_config("mmoe", tasks, loss_weighting="gradnorm", epochs=1)
    trainer = mm.Trainer(model, random_data(tasks), config)
    before = [p.detach().clone() for p in model.parameters()]
    losses = trainer.train_epoch()
    assert all(math.isfinite(v) for v in losses.values())
    assert trainer.weighting.weights() != pytest.approx({"t0": 1.0, "t1": 1.0}, abs=1e-6)  # GradNorm moved them
    assert all(not torch.equal(a, b) for a, b in zip(model.parameters(), before))


EXPERIMENT = tiny_experiment(**{
    "name": "experts",
    "data": {"source": "multimnist", "n_train": 96, "n_val": 64, "n_test": 0},
    "train": {"epochs": 1, "batch_size": 48, "lr": 0.01, "device": "cpu"},
    "space": {"families": ["mmoe", "ple"], "mmoe_experts": {"low": 2, "high": 3}, "ple_levels": {"low": 1, "high": 2},
              "loss_weights": "equal"},
    "search": {"num_trials": 2, "max_concurrent": 2, "pruner": {"name": "nop"},
               "points_to_evaluate": [{"family": "mmoe", "mmoe_experts": 3}, {"family": "ple", "ple_levels": 2}]},
    "baselines": {"ensemble": False, "seeds": 1},
})


def test_a_search_over_mmoe_and_ple_trains_both_and_reports_them(tmp_path: Path, ray_local) -> None:
    path = tmp_path / "experts.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    exp = spaces.load_experiment(path)
    plan = format_plan(exp)
    assert "mmoe_experts: 2..3" in plan and "ple_levels: 1..2" in plan and "ple_shared: 1  (default)" in plan
    result = run_experiment(exp, tmp_path / "run")
    table = pd.read_parquet(result.run_dir / "results.parquet")
    searched = table[table["phase"] == "search"]
    assert (searched["status"] == "finished").all(), searched[["status", "error"]]
    rows = {row["family"]: row for _, row in searched.iterrows()}
    assert set(rows) == {"mmoe", "ple"}
    assert rows["mmoe"]["mmoe_experts"] == 3 and rows["ple"]["ple_levels"] == 2 and rows["ple"]["ple_specific"] == 1
    for family, row in rows.items():  # the table's cost columns are the rebuilt model's
        assert row["params"] == mm.count_parameters(mm.build_model(json.loads(row["config"])))
        assert row["flops"] > 0 and row["latency_ms_b1"] > 0 and math.isfinite(row["delta_m"])
    html = reports.write_report(result.run_dir).read_text()
    assert "mmoe 3 shared experts" in html and "ple 2 levels 1 shared + 1 per-task experts" in html
