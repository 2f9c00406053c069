"""The function trainable every Ray Tune trial runs: build, train, report, checkpoint."""
from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import torch
from ray import tune

from mtl_models import (
    MultiTaskData,
    Trainer,
    build_model,
    count_parameters,
    delta_m,
    flatten_metrics,
    load_checkpoint_state,
    measure_cost,
    primary_metrics,
    save_checkpoint_state,
    seed_everything,
)

OBJECTIVE = "delta_m"


def train_trial(
    config: dict[str, Any],
    data: MultiTaskData,
    baseline: dict[str, float] | None = None,
    cpus: float = 1.0,
) -> None:
    """Train the model ``config`` describes for ``config['epochs']`` epochs, reporting each.

    Every epoch reports the training losses, each task's validation metrics
    (``val/<task>/<metric>``), the current loss weights, the model's inference cost
    (measured once, before training: ``flops``, ``latency_ms_b1``, ``latency_ms_bN``
    at ``latency_batch`` = the batch size, on ``cost_device``) and, when the single-task
    ``baseline`` (``{task: primary metric}``) is known, ``delta_m``; it checkpoints
    the whole training state, so a restarted trial resumes at the next epoch.
    """
    torch.set_num_threads(max(1, int(cpus)))
    seed_everything(int(config["seed"]))
    model = build_model(config)
    trainer = Trainer(model, data, config)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.load_state_dict(load_checkpoint_state(directory, map_location=trainer.device))
    params = count_parameters(model)
    cost = _cost_metrics(model, config, trainer.batch_size)
    higher = {t.name: t.higher_is_better for t in model.tasks}
    while trainer.epoch < int(config["epochs"]):
        start = time.perf_counter()
        losses = trainer.train_epoch()
        val = trainer.evaluate("val")
        metrics: dict[str, Any] = {
            **losses,
            **flatten_metrics("val", val),
            **{f"loss_weights/{t}": w for t, w in trainer.weighting.weights().items()},
            "epoch": trainer.epoch,
            "params": params,
            **cost,
            "epoch_time_s": time.perf_counter() - start,
        }
        if baseline:
            value = delta_m(primary_metrics(model.tasks, val), baseline, higher)
            metrics[OBJECTIVE] = value if math.isfinite(value) else None
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint_state(trainer.state_dict(), directory)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def _cost_metrics(model: torch.nn.Module, config: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """The model's inference cost on the trial's device, as constant per-epoch metrics."""
    cost = measure_cost(model, config["input"], batch_size).to_dict()
    cost["cost_device"] = cost.pop("device")
    cost.pop("params")
    return cost
