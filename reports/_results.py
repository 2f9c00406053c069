"""The results table: its files, column names, views and the single-task baseline.

One module owns what a row of ``results.parquet`` means. ``search`` writes the table
through it (row layout, Delta_m per row), reports, ``select`` and ``export`` read it
through it; no other module spells a column name.

Rows: one per trial of every phase (``baselines``, ``search``, ``confirm``) plus the
composed ensemble. Columns: the config keys, ``config_key`` (the same for trials that
differ only in their seed), ``seed``, each task's final validation metrics
(``val/<task>/<metric>``; ``test/...`` where evaluated post hoc), ``delta_m`` against the
single-task baseline, cost (``params``, ``flops``, ``latency_ms_b1``/``latency_ms_bN`` at
``latency_batch`` on ``cost_device``), ``answered_from`` (the earlier run, of the same
config and seed, that answered a trial without training it: a hard split that shares
nothing at the baselines' settings is the joint baselines' run), ``epochs_run``, ``warm_start_epochs`` (epochs the
config was trained before its own: a cross-stitch network started from the single-task
baselines) and ``budget_epochs`` (both), ``status``, ``error``, ``checkpoint`` and the
whole ``config`` as JSON.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from mtl_models import COST_COLUMNS, TaskSpec, config_key, delta_m, family_settings, metric_key, weighting_settings

RESULTS_FILE = "results.parquet"
CURVES_FILE = "curves.parquet"
AFFINITY_FILE = "affinity.json"  # the task-affinity stage's matrices and proposed trees, when it ran
PHASES = ("baselines", "search", "confirm")
ENDED = ("finished", "pruned", "errored")
CONFIG_COLUMNS = (
    "family",
    "task",
    "ensemble_member",
    "ensemble_size",
    "tree",
    "split_point",
    "loss_weighting",
    "gradnorm_alpha",
    "dwa_temperature",
    "optimization",
    "class_weighting",
    "grad_clip",
    "lr",
    "seed",
    "reference",
    "affinity_tree",
)
# ``reference`` of the confirmation runs of the single-task networks trained with the
# searched training hyperparameters (``search.confirm_configs``; "default": the no-search default)
TUNED_SINGLE_TASK = "tuned_single_task"
MAPPING_COLUMNS = ("split_points", "task_groups", "group_split_points", "loss_weights")
# The confirmation race (``search._racing``): each config's seeds, values and where it stopped,
# written by the driver after every round; its stops become columns of the confirm rows.
RACE_FILE = "confirm_race.json"
STOPPED_AFTER = "confirm_stopped_after"  # seeds a raced config ran before it stopped (empty: it ran every seed)
STOPPED_COLUMNS = (STOPPED_AFTER, "confirm_stopped_against", "confirm_stopped_delta_m",
                   "confirm_stopped_delta_m_low", "confirm_stopped_delta_m_high", "confirm_stopped_level")


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
    """The column of ``spec``'s primary metric on ``split`` (``val/<task>/<metric>``)."""
    return metric_key(split, spec.name, spec.metric_name)


# --- rows ----------------------------------------------------------------------------------


def config_row(config: dict[str, Any]) -> dict[str, Any]:
    """The config's columns: its searched keys (with its loss-weighting scheme's and its
    family's parameters as their builders declare them, ``<scheme>_<parameter>``,
    ``<family>_<parameter>`` or a mapped key such as ``alpha_same``), ``config_key``,
    mappings as ``key/<name>``."""
    row = {k: config.get(k) for k in CONFIG_COLUMNS}
    for key, value in {**family_settings(config), **weighting_settings(config)}.items():  # plugins' parameters too
        if not isinstance(value, dict):
            row.setdefault(key, value)
    row["config_key"] = config_key(config)
    row["backbone"] = (config.get("backbone") or {}).get("name")
    for key in MAPPING_COLUMNS:
        for name, value in (config.get(key) or {}).items():
            row[f"{key}/{name}"] = value
    return row


def result_row(
    trial_id: str,
    phase: str,
    config: dict[str, Any],
    metrics: dict[str, Any],
    *,
    epochs_run: int,
    status: str,
    checkpoint: str | None,
    error: str | None = None,
    error_type: str | None = None,
    retries: int = 0,
) -> dict[str, Any]:
    """One row of the table: a trial (or the composed ensemble) and what it reported last.

    ``metrics``: the trial's last result: ``val/...``, ``loss...``, ``params``, the cost
    columns, ``node_id``, ``time_total_s`` (what is missing stays empty).
    """
    warm = int(config["epochs"]) if config.get("column_init") == "single_task" else 0
    return {
        "trial_id": trial_id,
        "phase": phase,
        **config_row(config),
        # the last reported metrics, and the loss weights as they ended (dynamic schemes move them)
        **{k: v for k, v in metrics.items() if k.startswith(("val/", "loss"))},
        **{k: metrics.get(k) for k in COST_COLUMNS},
        "epochs_run": int(epochs_run),
        "epochs": int(config["epochs"]),
        "warm_start_epochs": warm,
        "budget_epochs": int(epochs_run) + warm,
        "status": status,
        "error": error if status == "errored" else None,
        "error_type": error_type if status == "errored" else None,
        "retries": int(retries),
        "node_id": metrics.get("node_id"),
        "time_total_s": metrics.get("time_total_s"),
        "checkpoint": checkpoint,
        # the earlier run that answered this (config, seed) without training it (its checkpoint)
        "answered_from": metrics.get("answered_from") if isinstance(metrics.get("answered_from"), str) else None,
        "config": json.dumps(config, sort_keys=True),
    }


# --- views ---------------------------------------------------------------------------------


def searched(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["phase"] == "search"]


def confirmed(results: pd.DataFrame) -> pd.DataFrame:
    """The finished trials of the confirmation phase (of raced-out configs too: :func:`full_seeds`)."""
    return results[(results["phase"] == "confirm") & (results["status"] == "finished")]


def full_seeds(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` without those of configs the confirmation race stopped (``STOPPED_AFTER`` set)."""
    if STOPPED_AFTER not in rows:
        return rows
    return rows[rows[STOPPED_AFTER].isna()]


def add_race(results: pd.DataFrame, race: dict[str, Any] | None) -> pd.DataFrame:
    """The race's stops (``RACE_FILE``'s content) as :data:`STOPPED_COLUMNS` of the confirm rows of
    each stopped config: the seeds it ran, the ``config_key`` of the rival it was stopped against
    (the leader, as a rule) and its paired difference from it (validation Delta_m points, config
    minus rival) with the bounds and their level."""
    stops = {c["config_key"]: c["stopped"] for c in (race or {}).get("configs", []) if c.get("stopped")}
    if not stops:
        return results
    results = results.copy()
    for column in STOPPED_COLUMNS:
        results[column] = None if column == "confirm_stopped_against" else math.nan
    for key, stop in stops.items():
        rows = (results["phase"] == "confirm") & (results["config_key"] == key)
        values = (stop["after"], stop["against"], stop["mean"], stop["low"], stop["high"], stop["level"])
        for column, value in zip(STOPPED_COLUMNS, values):
            results.loc[rows, column] = value
    return results


def finished(results: pd.DataFrame) -> pd.DataFrame:
    """Finished rows with a Delta_m."""
    return results[(results["status"] == "finished") & results["delta_m"].notna()]


def single_task_rows(results: pd.DataFrame, task: str | None = None) -> pd.DataFrame:
    """The finished single-task baseline trials (of ``task``), seed order."""
    rows = results[(results["family"] == "single_task") & (results["status"] == "finished")]
    if task is not None:
        rows = rows[rows["task"] == task]
    return rows.sort_values("ensemble_member") if "ensemble_member" in rows else rows


def ensemble_row(results: pd.DataFrame) -> pd.Series | None:
    rows = results[results["family"] == "ensemble"]
    return rows.iloc[0] if len(rows) else None


def best_trial(results: pd.DataFrame) -> pd.Series:
    """The finished searched trial with the highest Delta_m."""
    done = finished(searched(results))
    if done.empty:
        raise LookupError("No searched trial has finished with a Delta_m; nothing to pick.")
    return done.loc[done["delta_m"].idxmax()]


def task_values(results: pd.DataFrame, spec: TaskSpec, split: str = "val") -> list[float]:
    """The single-task baseline's finite values of ``spec``'s primary metric, one per seed."""
    column = metric_column(spec, split)
    rows = single_task_rows(results, spec.name)
    if column not in rows:
        return []
    return [float(v) for v in rows[column] if v is not None and not pd.isna(v) and math.isfinite(float(v))]


def single_task_baseline(results: pd.DataFrame, tasks: Iterable[TaskSpec], split: str = "val") -> dict[str, float]:
    """``B_t``: the mean final metric of task ``t``'s finished single-task trials (all seeds)."""
    out = {}
    for spec in tasks:
        values = task_values(results, spec, split)
        if values:
            out[spec.name] = sum(values) / len(values)
    return out


def row_metrics(row: pd.Series | dict[str, Any], tasks: Iterable[TaskSpec], split: str = "val") -> dict[str, float]:
    """``{task: primary metric}`` of a row on ``split`` (NaN where missing)."""
    out = {}
    for spec in tasks:
        value = row.get(metric_column(spec, split))
        out[spec.name] = math.nan if value is None or pd.isna(value) else float(value)
    return out


def add_delta_m(results: pd.DataFrame, split: str = "val", column: str = "delta_m") -> pd.DataFrame:
    """Add ``column`` (Delta_m on ``split`` against the single-task baseline's mean on it) to
    every row; a single-task row is compared on its own task only. NaN while a task has no
    finished single-task trial."""
    tasks = task_specs(results)
    baseline = single_task_baseline(results, tasks, split)
    higher = {t.name: t.higher_is_better for t in tasks}
    complete = len(baseline) == len(tasks)
    values = []
    for _, row in results.iterrows():
        base = baseline if row["family"] != "single_task" else {row["task"]: baseline.get(row["task"], math.nan)}
        values.append(delta_m(row_metrics(row, tasks, split), base, higher) if complete else math.nan)
    results = results.copy()
    results[column] = values
    return results


def single_task_summary(results: pd.DataFrame) -> dict[str, Any]:
    """The single-task baseline as one row: each task's mean metric over its seeds (also
    ``test/...`` where evaluated), the spread (std) across seeds, and the summed
    parameters, FLOPs and latency of one network per task (run one after another)."""
    tasks = task_specs(results)
    single = single_task_rows(results)
    row: dict[str, Any] = {"trial_id": "single-task", "family": "single_task", "delta_m": 0.0, "status": "finished"}
    params = 0.0
    for spec in tasks:
        rows = single[single["task"] == spec.name]
        values = pd.Series(task_values(results, spec), dtype=float)
        row[metric_column(spec)] = values.mean()
        row[f"{metric_column(spec)}:std"] = values.std(ddof=1) if len(values) > 1 else math.nan
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
    row["budget_epochs"] = row["epochs_run"]
    return row
