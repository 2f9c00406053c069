"""Beyond hard splits and channel cross-stitch, end to end: MTAN, scalar and NDDR units,
torchjd's gradient aggregators and the task-affinity stage in one tiny Ray Tune search,
in the table, the report, and an exported bundle."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml

import mtl_models as mm
import reports
import spaces
from search import run_experiment

from conftest import tiny_experiment

EXPERIMENT = tiny_experiment(**{
    "name": "beyond",
    "data": {"source": "multimnist", "n_train": 128, "n_val": 64, "n_test": 0},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"},
    "space": {
        "families": ["hard_split", "cross_stitch", "mtan"],
        "cross_stitch_unit": ["channel", "scalar", "nddr"],
        "loss_weighting": ["static", "upgrad", "pcgrad", "cagrad", "mgda", "imtlg", "aligned_mtl", "nash_mtl"],
        "loss_weights": "equal",
    },
    "affinity": {"epochs": 1, "every": 1},
    "search": {
        "num_trials": 6,
        "max_concurrent": 2,
        "pruner": {"name": "nop"},
        "points_to_evaluate": [
            {"family": "mtan", "loss_weighting": "upgrad"},
            {"family": "cross_stitch", "cross_stitch_unit": "nddr", "alpha_same": 0.9, "loss_weighting": "pcgrad"},
            {"family": "cross_stitch", "cross_stitch_unit": "scalar", "alpha_same": 0.8, "loss_weighting": "cagrad"},
        ],
    },
    "baselines": {"ensemble": False},
})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, ray_local) -> Path:
    root = tmp_path_factory.mktemp("beyond")
    path = root / "beyond.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    result = run_experiment(spaces.load_experiment(path), root / "run")
    reports.write_report(result.run_dir)
    return result.run_dir


@pytest.fixture(scope="module")
def searched(run_dir: Path) -> pd.DataFrame:
    results = pd.read_parquet(run_dir / "results.parquet")
    return results[results["phase"] == "search"]


def test_new_families_units_and_aggregators_train_as_trials(searched: pd.DataFrame) -> None:
    assert (searched["status"] == "finished").all() and searched["delta_m"].notna().all()
    rows = {(r.family, None if pd.isna(r.cross_stitch_unit) else r.cross_stitch_unit, r.loss_weighting)
            for r in searched.itertuples()}
    assert ("mtan", None, "upgrad") in rows
    assert ("cross_stitch", "nddr", "pcgrad") in rows and ("cross_stitch", "scalar", "cagrad") in rows
    mtan = searched[searched["family"] == "mtan"].iloc[0]
    assert json.loads(mtan["config"])["mtan_stages"][-1] == 1  # the last stage is always attended
    assert mtan["mtan_stages"].endswith("1")
    assert set(searched.columns) >= {"cross_stitch_unit", "mtan_stages", "affinity_tree", "cagrad_c"}


def test_affinity_stage_seeds_the_search_with_its_trees(run_dir: Path, searched: pd.DataFrame) -> None:
    affinity = json.loads((run_dir / "affinity.json").read_text())
    assert affinity["tasks"] == ["left", "right"] and affinity["stages"] == ["conv1", "conv2"]
    assert len(affinity["affinity"]) == 2 and all(len(m) == 2 and len(m[0]) == 2 for m in affinity["affinity"])
    assert affinity["steps"] >= 1 and affinity["trees"]
    tried = searched[searched["affinity_tree"].notna()]
    assert set(tried["affinity_tree"].astype(int)) == set(range(len(affinity["trees"])))  # every tree tried
    for _, row in tried.iterrows():
        config = json.loads(row["config"])
        assert config["tree"] == "affinity" and config["branches"] == affinity["trees"][int(row["affinity_tree"])]["branches"]
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    first = sorted(study.trials, key=lambda t: t.number)[3: 3 + len(affinity["trees"])]
    assert all(t.params.get("tree") == "affinity" or len(affinity["trees"]) == 1 for t in first)  # tried right after the user's points


def test_report_shows_the_affinity_and_the_new_structures(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text()
    assert "<section id='affinity'>" in html and "How the proposed trees fared" in html
    assert "mtan attend" in html and "cross_stitch[nddr]" in html and "[upgrad]" in html


def test_an_mtan_trial_exports_and_reloads(run_dir: Path, searched: pd.DataFrame, tmp_path: Path) -> None:
    trial = searched[searched["family"] == "mtan"]["trial_id"].iloc[0]
    bundle = reports.export_trial(run_dir, tmp_path / "mtan", trial_id=trial)
    model = mm.load(bundle)
    x = torch.rand(3, 1, 36, 36)
    scripted = torch.jit.load(str(bundle / "model.ts"))
    for i, task in enumerate(model.task_names):
        torch.testing.assert_close(scripted(x)[i], model(x)[task])
