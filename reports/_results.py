"""Reading a run's results table, and the views every report section and export shares."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_models import TaskSpec

RESULTS_FILE = "results.parquet"
CURVES_FILE = "curves.parquet"


def load_results(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``results.parquet`` and ``curves.parquet`` of a run directory."""
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist; run `mtlsearch report {run_dir}` to build it from the trials."
        )
    curves_path = run_dir / CURVES_FILE
    curves = pd.read_parquet(curves_path) if curves_path.is_file() else pd.DataFrame()
    return pd.read_parquet(path), curves


def task_specs(results: pd.DataFrame) -> list[TaskSpec]:
    config = json.loads(results["config"].iloc[0])
    return [TaskSpec.from_dict(t) for t in config["tasks"]]


def metric_column(spec: TaskSpec, split: str = "val") -> str:
    return f"{split}/{spec.name}/{spec.metric_name}"


def searched(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["phase"] == "search"]


def best_trial(results: pd.DataFrame) -> pd.Series:
    """The finished searched trial with the highest Delta_m."""
    done = searched(results)
    done = done[(done["status"] == "finished") & done["delta_m"].notna()]
    if done.empty:
        raise LookupError("No searched trial has finished with a Delta_m; nothing to pick.")
    return done.loc[done["delta_m"].idxmax()]


def single_task_summary(results: pd.DataFrame) -> dict[str, Any]:
    """The single-task baseline as one row: each task's mean metric over its seeds (also
    ``test/...`` where evaluated), the spread (std) across seeds, and the summed
    parameters, FLOPs and latency of one network per task (run one after another)."""
    tasks = task_specs(results)
    single = results[(results["family"] == "single_task") & (results["status"] == "finished")]
    row: dict[str, Any] = {"trial_id": "single-task", "family": "single_task", "delta_m": 0.0, "status": "finished"}
    params = 0.0
    for spec in tasks:
        rows = single[single["task"] == spec.name]
        values = rows[metric_column(spec)].astype(float)
        row[metric_column(spec)] = values.mean()
        row[f"{metric_column(spec)}:std"] = values.std(ddof=0) if len(values) > 1 else math.nan
        row[f"seeds:{spec.name}"] = len(values)
        test = metric_column(spec, "test")
        if test in rows:
            row[test] = rows[test].astype(float).mean()
            row["test_delta_m"] = 0.0
        params += float(rows["params"].iloc[0]) if len(rows) else math.nan
    row["params"] = params
    for column in ("flops", "latency_ms_b1", "latency_ms_bN"):  # one network per task, run one after another
        if column in single:
            per_task = [single.loc[single["task"] == t.name, column].astype(float).mean() for t in tasks]
            row[column] = sum(per_task)
    if "latency_batch" in single and len(single):
        row["latency_batch"] = single["latency_batch"].iloc[0]
    row["epochs_run"] = int(single["epochs_run"].max()) if len(single) else 0
    return row
