"""The function trainable every Ray Tune trial runs: build, train, report, checkpoint."""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from pyarrow import fs as pafs
from ray import tune

from mtl_models import (
    ColumnsModel,
    MultiTaskData,
    Trainer,
    build_model,
    build_weighting,
    config_key,
    count_parameters,
    delta_m,
    flatten_metrics,
    load_checkpoint_state,
    load_single_task_models,
    measure_cost,
    primary_metrics,
    save_checkpoint_state,
    seed_everything,
)
from mtl_models import results_table as rt
from mtl_models.families import tasks_from_config

from ._baselines import COLUMNS_DIR
from ._checkpoints import newest_good_checkpoint
from ._hooks import run_trial_hooks

OBJECTIVE = rt.DELTA_M  # what the search maximises


def train_trial(
    config: dict[str, Any],
    data: MultiTaskData,
    baseline: dict[str, float] | None = None,
    cpus: float = 1.0,
    single_task_checkpoints: dict[str, str] | None = None,
    answers: dict[str, dict[int, dict[str, Any]]] | None = None,
) -> None:
    """Train the model ``config`` describes for ``config['epochs']`` epochs, reporting each.

    Every epoch reports the training losses, each task's validation metrics
    (``val/<task>/<metric>``), the current loss weights, the model's inference cost
    (measured once, before training: ``flops``, ``latency_ms_b1``, ``latency_ms_bN``
    at ``latency_batch`` = the batch size, on ``cost_device``) and, when the single-task
    ``baseline`` (``{task: primary metric}``) is known, ``delta_m``; it checkpoints
    the whole training state, so a restarted trial resumes at the next epoch.
    A cross-stitch config with ``column_init: single_task`` starts its columns from
    ``single_task_checkpoints[task]`` (this run's single-task baselines).

    A (config, seed) that ``answers`` holds (``{config_key: {seed: answer}}``: runs already
    made of the same config, see :func:`search.answers_from`) is not trained: its epochs
    are reported from that run, with ``answered_from`` naming it and Delta_m and the loss
    weights this config's own, and its checkpoint is that run's.
    A joint baseline (a ``columns`` model) reports its cost and each column's
    (``columns/<task>/<cost>``) with its last epoch only, so that its first epoch, the run's
    first result, is not delayed by measuring them (``answers_from`` gives every epoch of it
    that cost), and checkpoints each column as a single-task network (``columns/<task>`` in
    its last checkpoint).
    """
    torch.set_num_threads(max(1, int(cpus)))
    answer = (answers or {}).get(config_key(config), {}).get(int(config["seed"]))
    if answer is not None:
        _replay(config, answer, baseline)
        return
    seed_everything(int(config["seed"]))
    model = build_model(config)
    checkpoint = newest_good_checkpoint(tune.get_checkpoint())  # a corrupt newest one: the one before, or none
    if checkpoint is None and config.get("column_init") == "single_task":
        model.init_columns_from(load_single_task_models(config, single_task_checkpoints))
    trainer = Trainer(model, data, config)
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.load_state_dict(load_checkpoint_state(directory, map_location=trainer.device))
    params = count_parameters(model)
    columns = isinstance(model, ColumnsModel)
    cost = {} if columns else _cost_metrics(model, config, trainer.batch_size)
    higher = {t.name: t.higher_is_better for t in model.tasks}
    node = ray.get_runtime_context().get_node_id()
    while trainer.epoch < int(config["epochs"]):
        start = time.perf_counter()
        run_trial_hooks("epoch_start", config, trainer=trainer)
        losses = trainer.train_epoch()
        val = trainer.evaluate("val")
        metrics: dict[str, Any] = {
            **losses,
            **flatten_metrics("val", val),
            **{rt.loss_weight(t): w for t, w in trainer.weighting.weights().items()},
            rt.EPOCH: trainer.epoch,
            "epochs": int(config["epochs"]),
            rt.PARAMS: params,
            "node_id": node,
            **cost,
            "epoch_time_s": time.perf_counter() - start,
            "wall_time": time.time(),  # when the epoch ended (orders epochs across trials and nodes)
        }
        if baseline:
            value = delta_m(primary_metrics(model.tasks, val), baseline, higher)
            metrics[OBJECTIVE] = value if math.isfinite(value) else None
        last_columns = columns and trainer.epoch >= int(config["epochs"])
        if last_columns:
            metrics.update(_cost_metrics(model, config, trainer.batch_size))
            metrics.update(_column_costs(model, config, trainer.batch_size))
        with tempfile.TemporaryDirectory() as directory:
            run_trial_hooks("checkpoint", config, epoch=trainer.epoch, directory=directory)
            save_checkpoint_state(trainer.state_dict(), directory)
            if last_columns:
                for task in model.task_names:
                    column = Path(directory) / COLUMNS_DIR / task
                    column.mkdir(parents=True)
                    save_checkpoint_state({"model": model.column(task).state_dict()}, column)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def _cost_metrics(model: torch.nn.Module, config: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """The model's inference cost on the trial's device, as constant per-epoch metrics."""
    cost = measure_cost(model, config["input"], batch_size).columns()
    cost.pop(rt.PARAMS)  # reported with every result as it is
    return cost


def _column_costs(model: ColumnsModel, config: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """Each column's cost as the single-task network it is: ``columns/<task>/<cost>``."""
    cost: dict[str, Any] = {}
    for task in model.task_names:
        column = model.column(task)
        column_cost = {**_cost_metrics(column, config, batch_size), rt.PARAMS: count_parameters(column)}
        cost.update({f"{COLUMNS_DIR}/{task}/{k}": v for k, v in column_cost.items()})
    return cost


def _replay(config: dict[str, Any], answer: dict[str, Any], baseline: dict[str, float] | None) -> None:
    """Report the epochs of the run that answers ``config`` (see :func:`train_trial`), with this
    config's loss weights and Delta_m; the last epoch carries that run's checkpoint."""
    tasks = tasks_from_config(config)
    weights = build_weighting(tasks, config).weights()
    higher = {t.name: t.higher_is_better for t in tasks}
    node = ray.get_runtime_context().get_node_id()
    epochs = answer["epochs"]
    for i, record in enumerate(epochs):
        metrics: dict[str, Any] = {
            **record,
            **{rt.loss_weight(t): w for t, w in weights.items()},
            "epochs": int(config["epochs"]),
            "node_id": node,
            "epoch_time_s": 0.0,
            "wall_time": time.time(),
            "answered_from": answer["trial_id"],
        }
        if all(rt.loss(t) in record for t in weights):  # the total under this config's own weights
            metrics[rt.loss()] = sum(w * record[rt.loss(t)] for t, w in weights.items())
        if baseline:
            val = {t.name: record.get(rt.primary(t)) for t in tasks}
            value = delta_m(val, baseline, higher) if all(v is not None for v in val.values()) else math.nan
            metrics[OBJECTIVE] = value if math.isfinite(value) else None
        if i < len(epochs) - 1 or not answer.get("checkpoint"):
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as directory:
            filesystem, path = pafs.FileSystem.from_uri(answer["checkpoint"]) if "://" in answer["checkpoint"] \
                else (pafs.LocalFileSystem(), answer["checkpoint"])
            pafs.copy_files(path, directory, source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
