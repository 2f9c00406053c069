"""Does the pruner mistake early transients for failure? Measured on searches run to the end.

    python -m bench.pruning [--datasets multimnist digits4] [--orders 200] [--work DIR]

For each dataset a search runs with pruning disabled (``pruner: nop``, every trial to
its last epoch, the confirmation phase off), recording every trial's Delta_m after every
epoch (``curves.parquet``): MultiMNIST with examples/quickstart.yaml (2 tasks, 12
trials, 5 epochs), and the 4-task digits of bench/_digits4.py (a regression, ~10 %
missing labels; 16 trials, 8 epochs). Then each pruner policy is replayed offline on
those curves. An Optuna pruner decides from the trials' intermediate values and the
completed trials' alone (``prune(study, trial)``), so a replay that reports the same
values at the same steps, with the same trials completed, makes the decisions it would
make in the search. The replay is checked against a real pruned search: the quickstart
searched again with its own pruner (``median``, 3 startup trials, 1 warm-up epoch), whose
curves, replayed in their wall-clock order, must give the same trials pruned at the same
epochs.

The replay's trials run ``max_concurrent`` at a time in the search's order, each epoch
taking as long as it took, a pruned trial freeing its slot at once; the same again for
``--orders`` random orders of the trials (the search's order is one draw of TPE; the
rate should not hang on it). (A search that prunes also feeds TPE other results, so
which configs it proposes next would differ: the replay measures the pruner's decisions
on one fixed set of trials, not the search's whole path.)

Reported per policy and dataset: the trials pruned, how many of those would have
finished in the top 3 (by final Delta_m of the unpruned run) and that **rate** (pruned
trials that would have been top 3 / pruned trials, pooled over the orders), the share of
top-3 trials lost, and the **cost** in trial-epochs (relative to no pruning).

Writes ``bench/results/pruning.json`` (with the git revision and the date).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
import pandas as pd
import torch
import yaml

import reports
import spaces
from bench._common import machine, write_result
from bench._digits4 import experiment as digits4_experiment
from search import log_to_stdout, run_experiment

ROOT = Path(__file__).resolve().parents[1]
TOP = 3
QUICKSTART_PRUNER = {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}  # examples/quickstart.yaml


def revision() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return out + ("+uncommitted" if dirty else "")


def dataset_experiment(name: str, work: Path, pruner: dict[str, Any]) -> dict[str, Any]:
    """The dataset's search with ``pruner`` and no confirmation phase."""
    if name == "multimnist":
        doc = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
        doc["search"]["pruner"] = pruner
        doc["confirm"] = {"top_k": 0}
        return doc
    return digits4_experiment(
        work / "digits4-data",
        train={"epochs": 8, "batch_size": 64, "optimizer": "adam", "lr": 0.003, "device": "cpu"},
        search={"num_trials": 16, "max_concurrent": 2, "sampler": {"name": "tpe", "n_startup_trials": 6},
                "pruner": pruner, "resources": {"cpu": 1, "gpu": 0}},
        confirm={"top_k": 0},
    )


def gather(name: str, work: Path, tag: str, pruner: dict[str, Any]) -> dict[str, Any]:
    """Run (or reuse, from ``work``) the dataset's search with ``pruner``; its metadata says
    at which revision and date it ran and how long it took."""
    run_dir = work / f"{name}-{tag}"
    meta_path = work / f"{name}-{tag}.meta.json"
    if meta_path.is_file() and (run_dir / reports.RESULTS_FILE).is_file():
        return {**json.loads(meta_path.read_text()), "reused_from": str(run_dir)}
    path = work / f"{name}-{tag}.yaml"
    path.write_text(yaml.safe_dump(dataset_experiment(name, work, pruner), sort_keys=False))
    exp = spaces.load_experiment(path)
    started = time.monotonic()
    run_experiment(exp, run_dir, num_cpus=os.cpu_count(), cache_dir=work / "cache")
    meta = {"revision": revision(), "date": machine()["date"], "wall_s": round(time.monotonic() - started, 1),
            "pruner": pruner, "run_dir": str(run_dir)}
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


@dataclass
class Curve:
    """One searched trial: Delta_m after each epoch (step = epoch - 1), when each epoch ended
    (``wall``), how long each took, whether it ran its whole budget."""

    trial_id: str
    values: list[float]
    wall: list[float]
    durations: list[float]
    complete: bool
    start_order: int


def load_curves(run_dir: Path) -> tuple[list[Curve], int]:
    results = pd.read_parquet(run_dir / reports.RESULTS_FILE)
    curves = pd.read_parquet(run_dir / "curves.parquet")
    search = results[results["phase"] == "search"]
    epochs = int(json.loads(search["config"].iloc[0])["epochs"])
    out = []
    for trial_id, rows in curves[curves["phase"] == "search"].groupby("trial_id"):
        rows = rows.sort_values("epoch")
        status = search.loc[search["trial_id"] == trial_id, "status"].iloc[0]
        totals = rows["time_total_s"].tolist()
        out.append(Curve(trial_id, rows["delta_m"].astype(float).tolist(), rows["wall_time"].astype(float).tolist(),
                         [b - a for a, b in zip([0.0, *totals], totals)], status == "finished", 0))
    out.sort(key=lambda c: c.wall[0] - c.durations[0])
    for i, curve in enumerate(out):
        curve.start_order = i
    return out, epochs
