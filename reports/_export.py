"""Export a trial of a run as a deployable bundle (config + weights + card)."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from mtl_models import build_model, load_checkpoint_state, save_bundle

from ._results import best_trial, load_results, metric_column, single_task_summary, task_specs


def pick_trial(results: pd.DataFrame, trial_id: str | None = None) -> pd.Series:
    if trial_id is None:
        return best_trial(results)
    match = results[results["trial_id"] == trial_id]
    if match.empty:
        raise LookupError(f"No trial {trial_id!r} in this run; known: {', '.join(results['trial_id'].astype(str))}.")
    return match.iloc[0]


def export_trial(run_dir: str | Path, out: str | Path, trial_id: str | None = None) -> Path:
    """Write the bundle of ``trial_id`` (default: the best finished searched trial) to ``out``.

    The bundle's ``config.json`` is the trial's own config, so ``mtl_models.load(out)``
    rebuilds the exact model; ``card.json`` records where it came from and how it
    scored against the baselines.
    """
    run_dir = Path(run_dir)
    results, _ = load_results(run_dir)
    row = pick_trial(results, trial_id)
    if not row.get("checkpoint"):
        raise LookupError(f"Trial {row['trial_id']!r} ({row['status']}) has no checkpoint to export.")
    config = json.loads(row["config"])
    model = build_model(config)
    model.load_state_dict(load_checkpoint_state(row["checkpoint"])["model"])
    tasks = task_specs(results)
    baseline = single_task_summary(results)
    card = {
        "trial_id": row["trial_id"],
        "family": row["family"],
        "delta_m_vs_single_task": None if pd.isna(row["delta_m"]) else float(row["delta_m"]),
        "val_metrics": {t.name: _number(row.get(metric_column(t))) for t in tasks},
        "single_task_val_metrics": {t.name: _number(baseline.get(metric_column(t))) for t in tasks},
        "metric_names": {t.name: t.metric_name for t in tasks},
        "params": int(row["params"]),
        "epochs": int(row["epochs_run"]),
        "status": row["status"],
        "run_dir": str(run_dir.resolve()),
        "checkpoint": row["checkpoint"],
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": config["input"],
        "usage": "model = mtl_models.load(DIR); outputs = model(images)  # images: (B, C, H, W) floats in [0, 1]",
    }
    return save_bundle(model, config, out, card)


def _number(value: object) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
