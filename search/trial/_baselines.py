"""The baselines every searched config is measured against, run as Tune trials.

Single-task: one network per task, same backbone, data, epochs and resources as the
searched trials, trained with ``S`` seeds ``seed .. seed+S-1``, ``S`` the larger of
``baselines.seeds`` and the ensemble's size: the single-task baseline ``B_t`` of
Delta_m is their mean validation metric, and their spread is the seed noise every
comparison is judged against. The ensemble baseline (Misra et al. 2016) averages the
predictions of the first ``ensemble_size`` of them per task, so it costs no training of
its own; it is evaluated as a trial would be (a Ray task with a trial's resources, the
same device, data feed and precision).

``baselines.columns: joint`` (the default) trains a seed's ``T`` single-task networks as
one trial: a ``columns`` model (every task's network side by side, nothing shared, the
losses summed at weight 1), which trains each column exactly as a single-task trial of
that seed would (``mtl_models.families._columns``; ``tests/test_joint_baselines.py``), so
the baselines cost ``S`` trials whatever ``T``. The results table lists each column as
the single-task row it is (:func:`column_config`; its checkpoint
``<checkpoint>/columns/<task>``). ``separate`` trains ``T x S`` single-task trials, as
before (and for columns that must differ).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from mtl_models import results_table as rt
from mtl_models.data import MultiTaskData

if TYPE_CHECKING:  # trial workers import this module: no experiment schema (pydantic, optuna) there
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


COLUMNS_DIR = "columns"  # in a joint baseline's checkpoint: one single-task checkpoint per task
COLUMNS_OF = "_columns_of"  # a joint baseline config's record of the fixed keys it overrides
_OVERRIDDEN = ("loss_weighting", "loss_weights", "static_normalise", "optimization")


def baseline_columns(exp: Experiment, fixed: dict[str, Any]) -> tuple[str, str | None]:
    """``joint`` or ``separate``, and why separate where ``baselines.columns`` asks for joint.

    A joint model sums its columns' losses at weight 1, which is what a single-task network's
    ``static`` weighting (and alternating optimisation, with one task) trains with; another
    fixed scheme on a single task is not that (uncertainty weighting learns a scale), and
    ``grad_clip`` clips one norm over all columns."""
    if exp.baselines.columns == "separate":
        return "separate", None
    scheme = fixed.get("loss_weighting") or "static"
    if scheme != "static":
        return "separate", f"the fixed loss weighting {scheme!r} on one task is not a plain sum of column losses"
    if fixed.get("grad_clip"):
        return "separate", "grad_clip clips one gradient norm over all columns, which couples them"
    return "joint", None


def baseline_configs(exp: Experiment, fixed: dict[str, Any], columns: str | None = None) -> list[dict[str, Any]]:
    """The baseline trials' configs (seed index ``k`` uses seed ``seed + k``): one ``columns``
    config per seed (joint), or one single-task config per task and seed (separate);
    ``columns`` defaults to :func:`baseline_columns`."""
    columns = columns or baseline_columns(exp, fixed)[0]
    if columns == "separate":
        return [
            {**fixed, "family": "single_task", "task": t.name, "ensemble_member": k, "seed": exp.seed + k}
            for k in range(baseline_seeds(exp))
            for t in exp.tasks
        ]
    return [joint_config(fixed, [t.name for t in exp.tasks], k, exp.seed + k) for k in range(baseline_seeds(exp))]


def joint_config(fixed: dict[str, Any], tasks: list[str], member: int, seed: int) -> dict[str, Any]:
    """A seed's single-task networks as one ``columns`` model: losses summed at weight 1."""
    return {
        **fixed, "family": "columns", "loss_weighting": "static", "loss_weights": {t: 1.0 for t in tasks},
        "static_normalise": False, "optimization": "joint", "ensemble_member": member, "seed": seed,
        COLUMNS_OF: {k: fixed.get(k) for k in _OVERRIDDEN},
    }


def column_config(config: dict[str, Any], task: str) -> dict[str, Any]:
    """Column ``task`` of a joint baseline ``config`` as the single-task config it trains: the one
    a ``separate`` baseline trial of that task and seed has."""
    base = {k: v for k, v in config.items() if k not in _OVERRIDDEN and k != COLUMNS_OF}
    base.update({k: v for k, v in (config.get(COLUMNS_OF) or {}).items() if v is not None})
    return {**base, "family": "single_task", "task": task}


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
    from reports import TUNED_TRAINING_KEYS  # here, not at the top: trial workers import this module, not the report's

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
        rt.PARAMS: count_parameters(model),  # the ensemble's result file names its cost as the table does
        "cost": cost,
        "epochs_run": int(config["epochs"]),
        "members": members,
    }
    return {k: v.cpu() for k, v in model.state_dict().items()}, row
