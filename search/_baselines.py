"""The baselines every searched config is measured against, run as Tune trials.

Single-task: one network per task, same backbone, data, epochs and resources as the
searched trials, trained with ``S`` seeds ``seed .. seed+S-1``, ``S`` the larger of
``baselines.seeds`` and the ensemble's size: the single-task baseline ``B_t`` of
Delta_m is their mean validation metric, and their spread is the seed noise every
comparison is judged against. The ensemble baseline (Misra et al. 2016) averages the
predictions of the first ``ensemble_size`` of them per task, so it costs no training of
its own; it is evaluated as a trial would be (a Ray task with a trial's resources, the
same device, data feed and precision).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtl_models import (
    atomic_directory,
    build_model,
    count_parameters,
    evaluate_model,
    flatten_metrics,
    load_checkpoint_state,
    measure_cost,
    save_checkpoint_state,
)
from mtl_models.data import MultiTaskData
from reports import TUNED_TRAINING_KEYS
from spaces import Experiment


ENSEMBLE_DIR = "ensemble"
ENSEMBLE_RESULT = "result.json"


def ensemble_size(exp: Experiment) -> int:
    if not exp.baselines.ensemble:
        return 1
    return exp.baselines.ensemble_size or len(exp.tasks)


def baseline_seeds(exp: Experiment) -> int:
    """Single-task networks per task: ``baselines.seeds``, or more when the ensemble needs them."""
    return max(exp.baselines.seeds, ensemble_size(exp))


def baseline_configs(exp: Experiment, fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """One single-task config per task and seed (seed index ``k`` uses seed ``seed + k``)."""
    return [
        {**fixed, "family": "single_task", "task": t.name, "ensemble_member": k, "seed": exp.seed + k}
        for k in range(baseline_seeds(exp))
        for t in exp.tasks
    ]


def tuned_single_task_config(
    exp: Experiment, fixed: dict[str, Any], tuned: dict[str, Any]
) -> dict[str, Any] | None:
    """The single-task networks trained with ``tuned``'s training hyperparameters; None when
    those are the baselines' own (then the baselines are that reference already).

    A hard split that shares nothing (``split_point: 0``: every task its own backbone
    column and head, parameter for parameter the single-task networks) with the loss
    weights the searched configs share when not searched (``fixed``'s). Under Adam
    (without weight decay) or AdamW an update is invariant to each column's loss scale,
    so it learns what the single-task networks would learn at those settings; it is the
    like-for-like reference for a search that tunes ``TUNED_TRAINING_KEYS``: how much of
    a searched config's gain a single-task network tuned the same way recovers.
    """
    changed = {k: tuned[k] for k in TUNED_TRAINING_KEYS if k in tuned and tuned[k] != fixed.get(k)}
    if not changed:
        return None
    return {
        **fixed, "family": "hard_split", "tree": "single", "split_point": 0,
        "loss_weighting": "static", "loss_weights": dict(fixed["loss_weights"]), "optimization": "joint",
        **changed,
    }


def compose_ensemble(
    fixed: dict[str, Any], members: dict[str, list[str]], data: MultiTaskData, run_dir: Path, size: int,
    resources: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Build the ensemble of the first ``size`` members per task, evaluate it, save it.

    The work runs as a Ray task with a trial's ``resources`` (``{"cpu": c, "gpu": g}``),
    so the ensemble's validation metrics and cost are measured on the device, through the
    data feed and in the precision its members' trials used. Writes
    ``ensemble/{state.pt,result.json}`` under ``run_dir`` and returns the result
    (config, validation metrics, parameters, cost, member checkpoints).
    """
    import ray

    resources = resources or {"cpu": 1.0, "gpu": 0.0}
    task = ray.remote(_compose).options(num_cpus=resources["cpu"], num_gpus=resources["gpu"])
    config = {**fixed, "family": "ensemble", "ensemble_size": size}
    chosen = {t: paths[:size] for t, paths in members.items()}
    state, row = ray.get(task.remote(config, chosen, data, resources["cpu"]))
    with atomic_directory(run_dir / ENSEMBLE_DIR) as tmp:
        save_checkpoint_state({"model": state}, tmp)
        (tmp / ENSEMBLE_RESULT).write_text(json.dumps(row, indent=2, sort_keys=True))
    return row


def _compose(
    config: dict[str, Any], members: dict[str, list[str]], data: MultiTaskData, cpus: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """In a Ray worker: load the members, evaluate and cost the ensemble as a trial would."""
    import torch

    torch.set_num_threads(max(1, int(cpus)))
    model = build_model(config)
    for task, paths in members.items():
        for member, path in zip(model.members[task], paths):
            member.load_state_dict(load_checkpoint_state(path)["model"])
    metrics = evaluate_model(model, data, config, "val")
    cost = measure_cost(model, config["input"], int(config.get("batch_size", 128))).columns()
    row = {
        "trial_id": "ensemble",
        "config": config,
        "metrics": flatten_metrics("val", metrics),
        "params": count_parameters(model),
        "cost": cost,
        "epochs_run": int(config["epochs"]),
        "members": members,
    }
    return {k: v.cpu() for k, v in model.state_dict().items()}, row
