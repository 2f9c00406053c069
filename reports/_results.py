"""The results table: its files, column names, views and the single-task baseline.

One module owns what a row of ``results.parquet`` means. ``search`` writes the table
through it (row layout, Delta_m per row), reports, ``select`` and ``export`` read it
through it. The column names, the named filters and the curve layout are
:mod:`mtl_models.results_table`'s (``rt``); no other module spells a column name.

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

from mtl_models import TaskSpec, config_key, delta_m, family_settings, weighting_settings
from mtl_models import results_table as rt
from mtl_models.results_table import (  # noqa: F401  the views are reports' public names too
    STOPPED_AFTER,
    STOPPED_COLUMNS,
    confirmed,
    finished,
    full_seeds,
    searched,
    single_task_rows,
)

RESULTS_FILE = "results.parquet"
CURVES_FILE = "curves.parquet"
AFFINITY_FILE = "affinity.json"  # the task-affinity stage's matrices and proposed trees, when it ran
PHASES = rt.PHASES
ENDED = rt.ENDED
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
# The confirmation race (``search.study._racing``): each config's seeds, values and where it stopped,
# written by the driver after every round; its stops become columns of the confirm rows.
RACE_FILE = "confirm_race.json"


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
    return rt.primary(spec, split)


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
        **rt.reported(metrics),
        **{k: metrics.get(k) for k in rt.COST_COLUMNS},
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
        rows = (results[rt.PHASE] == rt.CONFIRM) & (results[rt.CONFIG_KEY] == key)
        values = (stop["after"], stop["against"], stop["mean"], stop["low"], stop["high"], stop["level"])
        for column, value in zip(STOPPED_COLUMNS, values):
            results.loc[rows, column] = value
    return results


def ensemble_row(results: pd.DataFrame) -> pd.Series | None:
    rows = rt.ensemble_rows(results)
    return rows.iloc[0] if len(rows) else None


def best_trial(results: pd.DataFrame) -> pd.Series:
    """The finished searched trial with the highest Delta_m."""
    done = rt.finished_searched(results)
    if done.empty:
        raise LookupError("No searched trial has finished with a Delta_m; nothing to pick.")
    return done.loc[done[rt.DELTA_M].idxmax()]


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


def add_delta_m(results: pd.DataFrame, split: str = rt.VAL, column: str = rt.DELTA_M) -> pd.DataFrame:
    """Add ``column`` (Delta_m on ``split`` against the single-task baseline's mean on it) to
    every row; a single-task row is compared on its own task only. NaN while a task has no
    finished single-task trial."""
    tasks = task_specs(results)
    baseline = single_task_baseline(results, tasks, split)
    higher = {t.name: t.higher_is_better for t in tasks}
    complete = len(baseline) == len(tasks)
    values = []
    for _, row in results.iterrows():
        base = baseline if row[rt.FAMILY] != rt.SINGLE_TASK else {row[rt.TASK]: baseline.get(row[rt.TASK], math.nan)}
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
    row: dict[str, Any] = {rt.TRIAL_ID: "single-task", rt.FAMILY: rt.SINGLE_TASK, rt.DELTA_M: 0.0, rt.STATUS: rt.FINISHED}
    params = 0.0
    for spec in tasks:
        rows = single[single[rt.TASK] == spec.name]
        values = pd.Series(task_values(results, spec), dtype=float)
        row[rt.primary(spec)] = values.mean()
        row[rt.std(rt.primary(spec))] = values.std(ddof=1) if len(values) > 1 else math.nan
        row[rt.seeds(spec.name)] = len(values)
        test = rt.primary(spec, rt.TEST)
        if test in rows:
            row[test] = rows[test].astype(float).mean()
            row[rt.TEST_DELTA_M] = 0.0
        params += float(rows[rt.PARAMS].iloc[0]) if len(rows) else math.nan
    row[rt.PARAMS] = params
    for column in (rt.FLOPS, *rt.LATENCIES):  # one network per task, run one after another
        if column in single:
            per_task = [single.loc[single[rt.TASK] == t.name, column].astype(float).mean() for t in tasks]
            row[column] = sum(per_task)
    if rt.LATENCY_BATCH in single and len(single):
        row[rt.LATENCY_BATCH] = single[rt.LATENCY_BATCH].iloc[0]
    row[rt.EPOCHS_RUN] = int(single[rt.EPOCHS_RUN].max()) if len(single) else 0
    row[rt.BUDGET_EPOCHS] = row[rt.EPOCHS_RUN]
    return row
