"""Retrain a chosen config on train + val before deploying it.

The search picked the config on the validation split, so once chosen, the validation
labels can train it too: the same config, seed and budget (epochs), from scratch,
on the union of both splits. The test split, when the data has one, stays held out
and is the only honest measure of the retrained model.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
import torch

from mtl_models import (
    MultiTaskData,
    MultiTaskModel,
    Split,
    Trainer,
    build_model,
    load_single_task_models,
    format_plain,
    report_progress,
    seed_everything,
)
from mtl_models import results_table as rt

from ._run import RunData, data_loader

log = logging.getLogger("mtlsearch.reports")


@dataclass
class Retrained:
    """A config trained again on train + val: the model and what the card says of it."""

    model: MultiTaskModel
    info: dict[str, Any]


def retrain(
    run: RunData,
    row: pd.Series,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Retrained:
    """Train ``row``'s config from scratch on ``run``'s train + val splits for its epochs.

    Cross-stitch columns with ``column_init: single_task`` start, as in the search, from
    the run's single-task baselines. Returns the model (on CPU) and, for the card, the
    splits and rows trained on, the epochs, the time it took and the held-out test
    metrics (None without a test split). Each epoch is a progress record of the
    ``mtlsearch.reports`` logger (a bar on the CLI's terminal), or a line to ``progress``.
    """
    if row[rt.FAMILY] == rt.ENSEMBLE:
        raise ValueError("--retrain: the ensemble baseline is composed of trained single-task networks, not trained "
                         "itself; export it as it is, or retrain a searched config.")
    config = json.loads(row["config"])
    if device is not None:
        config["device"] = device
    data = data_loader(run.run_dir)()
    test = data.splits.get("test")
    held_out = test if test is not None and len(test) else None
    both = Split.concat([data.splits["train"].materialize(), data.splits["val"].materialize()])
    # "val" here is only what the trainer evaluates at the end: the test split, or nothing.
    splits = {"train": both, "val": held_out if held_out is not None else data.splits["val"]}
    merged = MultiTaskData(data.tasks, splits, description=f"{data.description} (train + val)")
    seed_everything(int(config["seed"]))
    model = build_model(config)
    if config.get("column_init") == "single_task":
        model.init_columns_from(load_single_task_models(config, _single_task_checkpoints(run.results)))
    trainer = Trainer(model, merged, config)
    epochs = int(config["epochs"])
    started = time.monotonic()
    for _ in range(epochs):
        losses = trainer.train_epoch()
        line = (f"[retrain {time.monotonic() - started:5.0f}s] epoch {trainer.epoch}/{epochs} on train + val "
                f"({len(both)} rows): loss {format_plain(losses['loss'])}")
        if progress is not None:
            progress(line)
        else:
            report_progress(log, "retraining", trainer.epoch, epochs, line)
    metrics = trainer.evaluate("val") if held_out is not None else None
    info = {
        "on": ["train", "val"],
        "rows": len(both),
        "epochs": epochs,
        "seed": int(config["seed"]),
        "seconds": round(time.monotonic() - started, 1),
        "test": metrics,
        "note": (
            "Retrained from scratch on train + val with the searched config, seed and epochs. The validation "
            "metrics in this card are the searched model's; the retrained model has seen the validation split, "
            + ("so its held-out measure is the test split." if held_out is not None else "and the data has no test split.")
        ),
    }
    return Retrained(trainer.model.to(torch.device("cpu"), memory_format=torch.contiguous_format).eval(), info)


def _single_task_checkpoints(results: pd.DataFrame) -> dict[str, str]:
    """Per task, the checkpoint of the run's first finished single-task baseline."""
    single = rt.single_task_rows(results)  # in seed order
    return {task: rows["checkpoint"].iloc[0] for task, rows in single.groupby("task")}
