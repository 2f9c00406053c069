"""Multi-objective search: Delta_m against parameters, a Pareto front in the Optuna study."""
from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

import spaces
from search import run_experiment

from conftest import tiny_experiment


EXPERIMENT = tiny_experiment(**{
    "name": "pareto",
    "seed": 0,
    "data": {"source": "multimnist", "n_train": 128, "n_val": 64, "n_test": 0},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
    "space": {"families": ["hard_split", "cross_stitch"], "split_point": {"low": 0, "high": 2}},
    "search": {
        "objectives": ["delta_m", "params"],
        "num_trials": 4,
        "max_concurrent": 2,
        "sampler": {"name": "tpe", "n_startup_trials": 2},
    },
    "baselines": {"ensemble": False},
})


def test_multi_objective_search_tells_optuna_delta_m_and_parameters(tmp_path: Path, ray_local) -> None:
    path = tmp_path / "pareto.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    exp = spaces.load_experiment(path)
    assert exp.search.pruner.name == "nop"  # pruners judge one objective
    run = run_experiment(exp, tmp_path / "run")
    results = pd.read_parquet(run.run_dir / "results.parquet")
    searched = results[results["phase"] == "search"]
    assert (searched["status"] == "finished").all() and len(searched) == 4
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run.run_dir / 'optuna.db'}")
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    told = sorted(tuple(t.values) for t in study.trials)
    expected = sorted(zip(searched["delta_m"], searched["params"].astype(float)))
    assert len(told) == len(expected)
    for got, want in zip(told, expected):  # pytest.approx takes no nested sequences (pytest >= 9.1)
        assert got == pytest.approx(want)
    assert 1 <= len(study.best_trials) <= 4  # the Pareto front
    import reports

    html = reports.write_report(run.run_dir).read_text()
    assert "Pareto front" in html


def test_a_pruner_cannot_judge_several_objectives(tmp_path: Path) -> None:
    bad = {**EXPERIMENT, "search": {**EXPERIMENT["search"], "pruner": {"name": "median"}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(spaces.ExperimentError, match="multi-objective search .* cannot prune"):
        spaces.load_experiment(path)
