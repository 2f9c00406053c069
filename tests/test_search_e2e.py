"""End to end on tiny data: YAML -> Ray Tune + Optuna trials -> table -> report -> export -> load."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import mtl_models as mm
import reports
import spaces
from search import run_experiment
from search.cli import main as cli

from conftest import tiny_experiment


EXPERIMENT = tiny_experiment(**{
    "name": "tiny",
    "seed": 0,
    "data": {"source": "multimnist", "n_train": 256, "n_val": 128, "n_test": 0},
    "head": {"pool_size": 2},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "device": "cpu"},
    "space": {
        "lr": {"low": 1e-5, "high": 0.02, "log": True},
        "tree": ["single", "per_task"],
        "column_init": ["backbone", "single_task"],
        "loss_weighting": ["static", "uncertainty", "gradnorm", "famo"],
        "class_weighting": ["none", "balanced"],
    },
    "search": {
        "num_trials": 4,
        "max_concurrent": 1,
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 1},
        "points_to_evaluate": [
            {"family": "hard_split", "tree": "single", "split_point": 1, "lr": 0.01, "loss_weighting": "static",
             "class_weighting": "none"},
            {"family": "hard_split", "tree": "single", "split_point": 1, "lr": 0.00001,  # learns nothing: pruned
             "loss_weighting": "famo"},
            {"family": "cross_stitch", "alpha_same": 0.9, "alpha_diff": 0.1, "lr_multiplier": 10.0, "lr": 0.01,
             "column_init": "single_task", "loss_weighting": "uncertainty"},
            {"family": "hard_split", "tree": "per_task", "split_points": {"left": 1, "right": 2}, "lr": 0.01,
             "loss_weighting": "gradnorm", "class_weighting": "balanced"},
        ],
    },
    "baselines": {"ensemble": True},
})


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("e2e")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT, sort_keys=False))
    exp = spaces.load_experiment(path)
    result = run_experiment(exp, root / "run")
    reports.write_report(result.run_dir)
    return result


def test_search_runs_prunes_and_writes_the_table(run) -> None:
    results = pd.read_parquet(run.run_dir / "results.parquet")
    baselines = results[results["phase"] == "baselines"]
    assert sorted(baselines["family"]) == ["ensemble"] + ["single_task"] * 4
    assert set(baselines["status"]) == {"finished"}
    searched = results[results["phase"] == "search"].reset_index(drop=True)
    assert len(searched) == 4
    assert searched[searched["lr"] == 0.01]["status"].iloc[0] == "finished"
    slow = searched[searched["lr"] == 0.00001].iloc[0]
    assert slow["status"] == "pruned" and slow["epochs_run"] == 2
    # FAMO through the trainable and its checkpoints: its weights moved off equal and are recorded
    assert slow["loss_weighting"] == "famo" and slow["loss_weights/left"] + slow["loss_weights/right"] == pytest.approx(1.0)
    assert slow["loss_weights/left"] != pytest.approx(0.5, abs=1e-3)
    assert set(searched["family"]) == {"hard_split", "cross_stitch"}
    for column in ("val/left/accuracy", "val/right/accuracy", "delta_m", "params", "checkpoint", "config"):
        assert column in results
    finished = results[results["status"] == "finished"]
    assert finished["delta_m"].notna().all()
    assert (finished["epochs_run"] == 3).all()
    # Delta_m recomputed by hand from the table for the first searched trial
    base = {t: results[(results["task"] == t)][f"val/{t}/accuracy"].mean() for t in ("left", "right")}
    row = searched.iloc[0]
    expected = 50 * sum((row[f"val/{t}/accuracy"] - base[t]) / base[t] for t in ("left", "right"))
    assert row["delta_m"] == pytest.approx(expected)
    curves = pd.read_parquet(run.run_dir / "curves.parquet")
    assert len(curves[curves["trial_id"] == slow["trial_id"]]) == 2
    assert (run.run_dir / "optuna.db").is_file()


def test_every_sharing_and_loss_option_is_a_column(run) -> None:
    results = pd.read_parquet(run.run_dir / "results.parquet")
    searched = results[results["phase"] == "search"]
    stitched = searched[searched["family"] == "cross_stitch"].iloc[0]
    assert stitched["column_init"] == "single_task" and stitched["loss_weighting"] == "uncertainty"
    assert stitched["cross_stitch_stages"] == "all"
    tree = searched[searched["tree"] == "per_task"].iloc[0]
    assert (tree["split_points/left"], tree["split_points/right"]) == (1, 2)
    assert tree["loss_weighting"] == "gradnorm" and tree["class_weighting"] == "balanced"
    # dynamic schemes: the table holds the weights as they ended, not the initial ones
    assert tree["loss_weights/left"] + tree["loss_weights/right"] == pytest.approx(1.0)
    assert stitched["loss_weights/left"] != pytest.approx(stitched["loss_weights/right"])


def test_search_trial_configs_are_the_sampled_ones(run) -> None:
    results = pd.read_parquet(run.run_dir / "results.parquet")
    configs = [json.loads(c) for c in results[results["phase"] == "search"]["config"]]
    for config in configs:
        assert not any(k.startswith("_") for k in config)
        assert sum(config["loss_weights"].values()) == pytest.approx(1.0)
        mm.build_model(config)  # every recorded config rebuilds


def test_report_lists_the_baselines_and_is_self_contained(run) -> None:
    html = (run.run_dir / "report.html").read_text()
    assert "single-task" in html and "ensemble" in html
    assert html.count("<tr class='baseline'>") == 4  # single-task and ensemble: in the summary and pinned atop the leaderboard
    assert "plotly.js v" in html and re.search(r"<script[^>]*\ssrc=", html) is None  # inlined: opens offline
    assert "pruned" in html


def test_export_then_load_reproduces_the_recorded_metric(run, tmp_path: Path) -> None:
    loaded = reports.load_run(run.run_dir, evaluate=False)
    best = loaded.results.set_index("trial_id", drop=False).loc[loaded.pick.chosen["trial_id"]]  # the deploy candidate
    bundle = reports.export_trial(run.run_dir, tmp_path / "best")
    model = mm.load(bundle)
    card = json.loads((bundle / "card.json").read_text())
    assert card["trial_id"] == best["trial_id"]
    exp = spaces.load_experiment(run.run_dir / "experiment.yaml")
    data = exp.load_data()
    metrics = mm.evaluate(model, data.splits["val"])
    for task in ("left", "right"):
        assert metrics[task]["accuracy"] == pytest.approx(best[f"val/{task}/accuracy"], abs=1e-9)
    # the loaded model gives the same outputs as one rebuilt from the checkpoint directly
    direct = mm.build_model(json.loads(best["config"]))
    direct.load_state_dict(mm.load_checkpoint_state(best["checkpoint"])["model"])
    x = torch.rand(4, 1, 36, 36)
    for task, out in direct.eval()(x).items():
        torch.testing.assert_close(model(x)[task], out)


def test_the_ensemble_can_be_exported_too(run, tmp_path: Path) -> None:
    model = mm.load(reports.export_trial(run.run_dir, tmp_path / "ens", trial_id="ensemble"))
    assert isinstance(model, mm.EnsembleModel)


def test_export_retrains_the_config_on_train_and_val(run, tmp_path: Path, capsys) -> None:
    results = pd.read_parquet(run.run_dir / "results.parquet")
    # the cross-stitch point starts its columns from the single-task baselines: retraining must too
    row = results[(results.family == "cross_stitch") & (results.column_init == "single_task")].iloc[0]
    out = tmp_path / "retrained"
    assert cli(["export", str(run.run_dir), "--trial", row["trial_id"], "--out", str(out), "--retrain",
                "--no-format", "onnx", "--no-format", "torchscript"]) == 0
    printed = capsys.readouterr()
    assert "epoch 3/3 on train + val (384 rows)" in printed.err  # progress: on stderr
    assert f"Exported trial {row['trial_id']} (as asked; {row['phase']} phase" in printed.out
    card = json.loads((out / "card.json").read_text())
    assert card["retrained"]["on"] == ["train", "val"] and card["retrained"]["rows"] == 256 + 128
    assert card["retrained"]["test"] is None and "no test split" in card["retrained"]["note"]
    assert "Retrained" in (out / "README.md").read_text()
    searched = mm.load_checkpoint_state(row["checkpoint"])["model"]
    retrained = torch.load(out / "weights.pt", weights_only=True)
    assert searched.keys() == retrained.keys()
    assert any(not torch.equal(searched[k], retrained[k]) for k in searched)
    with pytest.raises(ValueError, match="the ensemble baseline is composed"):
        reports.export_trial(run.run_dir, tmp_path / "ens", trial_id="ensemble", retrain=True)
    assert not (tmp_path / "ens").exists()


def test_report_command_rebuilds_from_the_run_directory(run, capsys) -> None:
    (run.run_dir / "results.parquet").unlink()
    assert cli(["report", str(run.run_dir), "--out", str(run.run_dir / "again.html")]) == 0
    assert (run.run_dir / "results.parquet").is_file()
    assert "again.html" in capsys.readouterr().out


def test_cli_refuses_bad_experiments_before_starting(tmp_path: Path, ray_local, capsys) -> None:
    # `run` starts a local Ray while it reads the experiment (search.run._start): the tests' 2-CPU one here
    bad = dict(EXPERIMENT, train={"epochs": 0})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert cli(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "train.epochs: Input should be greater than 0" in err
    assert not (tmp_path / "out").exists()


def test_trials_larger_than_any_node_are_refused_before_starting(tmp_path: Path, ray_local, capsys) -> None:
    """On the 2-CPU local Ray a 4-CPU (or a 1-GPU) trial would wait forever: refused, no run directory."""
    for resources, asked in (({"cpu": 4}, "cpu 4, gpu 0"), ({"cpu": 1, "gpu": 1}, "cpu 1, gpu 1")):
        path = tmp_path / "big.yaml"
        path.write_text(yaml.safe_dump(dict(EXPERIMENT, search={"num_trials": 1, "resources": resources})))
        assert cli(["run", str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"search.resources: each trial asks for {asked}, but no node of this Ray cluster has that much" in err
        assert "cpu 2, gpu 0" in err  # what the nodes have
        assert not (tmp_path / "out").exists()
