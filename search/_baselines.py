"""The baselines every searched config is measured against, run as Tune trials.

Single-task: one network per task, same backbone, data, epochs and resources as the
searched trials. With ``ensemble_size`` K, each task gets K single-task trials with
seeds ``seed .. seed+K-1``; the single-task baseline ``B_t`` of Delta_m is their mean
validation metric, and the ensemble baseline (Misra et al. 2016) averages the K
members' predictions, so it costs no training of its own.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_models import (
    atomic_directory,
    build_model,
    count_parameters,
    evaluate,
    flatten_metrics,
    load_checkpoint_state,
    measure_cost,
    save_checkpoint_state,
)
from mtl_models import MultiTaskModel
from mtl_models.data import MultiTaskData
from spaces import Experiment


ENSEMBLE_DIR = "ensemble"
ENSEMBLE_RESULT = "result.json"


def ensemble_size(exp: Experiment) -> int:
    if not exp.baselines.ensemble:
        return 1
    return exp.baselines.ensemble_size or len(exp.tasks)


def baseline_configs(exp: Experiment, fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """One single-task config per task and ensemble member (member ``k`` uses seed ``seed + k``)."""
    return [
        {**fixed, "family": "single_task", "task": t.name, "ensemble_member": k, "seed": exp.seed + k}
        for k in range(ensemble_size(exp))
        for t in exp.tasks
    ]


def single_task_baseline(results: pd.DataFrame, tasks: list[Any]) -> dict[str, float]:
    """``B_t``: the mean final validation metric of task ``t``'s finished single-task trials."""
    out = {}
    for spec in tasks:
        column = f"val/{spec.name}/{spec.metric_name}"
        rows = results[(results["family"] == "single_task") & (results["task"] == spec.name)]
        rows = rows[rows["status"] == "finished"]
        values = [v for v in rows.get(column, pd.Series(dtype=float)).tolist() if math.isfinite(v)]
        if values:
            out[spec.name] = sum(values) / len(values)
    return out


def compose_ensemble(
    fixed: dict[str, Any], members: dict[str, list[str]], data: MultiTaskData, run_dir: Path
) -> dict[str, Any]:
    """Build the ensemble from the members' checkpoints, evaluate it, save it as a checkpoint.

    Writes ``ensemble/{state.pt,result.json}`` under ``run_dir`` and returns
    the result (config, validation metrics, parameters, member checkpoints).
    """
    size = min(len(paths) for paths in members.values())
    config = {**fixed, "family": "ensemble", "ensemble_size": size}
    model = build_model(config)
    for task, paths in members.items():
        for member, path in zip(model.members[task], paths[:size]):
            member.load_state_dict(load_checkpoint_state(path)["model"])
    metrics = {name: evaluate(model, split) for name, split in data.splits.items() if name == "val"}
    target = run_dir / ENSEMBLE_DIR
    row = {
        "trial_id": "ensemble",
        "config": config,
        "metrics": flatten_metrics("val", metrics["val"]),
        "params": count_parameters(model),
        "cost": _ensemble_cost(model, fixed),
        "epochs_run": int(fixed["epochs"]),
        "members": members,
    }
    with atomic_directory(target) as tmp:
        save_checkpoint_state({"model": model.state_dict()}, tmp)
        (tmp / ENSEMBLE_RESULT).write_text(json.dumps(row, indent=2, sort_keys=True))
    return row


def _ensemble_cost(model: MultiTaskModel, fixed: dict[str, Any]) -> dict[str, Any]:
    """The composed ensemble's inference cost, measured in the driver (the trials measure their own)."""
    cost = measure_cost(model, fixed["input"], int(fixed.get("batch_size", 128))).to_dict()
    cost["cost_device"] = cost.pop("device")
    return cost
