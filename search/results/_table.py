"""Collect a run's results table from its Ray Tune experiments, and write it.

What a row means (Delta_m, the views the report takes) is owned by :mod:`reports._results`,
its column names and the curves' layout by :mod:`mtl_models.results_table`; this module only reads the trials (each phase's Tune
experiment, possibly on shared or object storage) and the composed ensemble, and
writes ``results.parquet`` and ``curves.parquet`` (one row per trial and epoch), with the
confirmation race's stops (``confirm_race.json``) on the rows of the configs it stopped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from pyarrow import fs as pafs
from ray import cloudpickle, tune
from ray.tune import ExperimentAnalysis

from mtl_models import atomic_path
from mtl_models import results_table as rt
from reports import CURVES_FILE, PHASES, RACE_FILE, RESULTS_FILE, add_delta_m, add_race, result_row

from ..trial._baselines import COLUMNS_DIR, ENSEMBLE_DIR, ENSEMBLE_RESULT, column_config

_STATUS = {"ERROR": "errored", "RUNNING": "running", "PENDING": "pending", "PAUSED": "pending"}


def storage_root(run_dir: Path) -> str:
    """Where a run's Ray Tune experiments live: ``run.json``'s ``storage``, else the run directory."""
    run = run_dir / "run.json"
    storage = json.loads(run.read_text()).get("storage") if run.is_file() else None
    return storage or str(run_dir.resolve())


def phase_path(run_dir: Path, phase: str) -> str:
    return f"{storage_root(run_dir).rstrip('/')}/{phase}"


def _error(filesystem: pafs.FileSystem, trial_path: str) -> tuple[str | None, str | None]:
    """The last line of a trial's ``error.txt`` and the exception type named in it."""
    try:
        with filesystem.open_input_stream(f"{trial_path}/error.txt") as f:
            text = f.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return None, None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[-1] if lines else "unknown error"
    kind = message.split(":", 1)[0].rsplit(".", 1)[-1] if ":" in message else None
    return message, kind


def _checkpoint_uri(checkpoint: Any, scheme: str | None) -> str | None:
    if checkpoint is None:
        return None
    return f"{scheme}://{checkpoint.path}" if scheme else checkpoint.path


def drop_unreadable_errors(path: str) -> list[str]:
    """Delete the trials' ``error.pkl`` files under the experiment at ``path`` that a killed
    driver left unreadable (cut off mid-write): Ray Tune fails on them after a restore.
    Each trial's ``error.txt`` keeps the error. Returns the files deleted."""
    filesystem, root = pafs.FileSystem.from_uri(path)
    dropped = []
    for entry in filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        pickled = f"{entry.path}/error.pkl"
        if entry.type != pafs.FileType.Directory or filesystem.get_file_info(pickled).type != pafs.FileType.File:
            continue
        try:
            with filesystem.open_input_stream(pickled) as f:
                cloudpickle.loads(f.readall())
        except Exception:  # truncated or empty: any unpickling error means the same
            filesystem.delete_file(pickled)
            dropped.append(pickled)
    return dropped


def _trial_rows(run_dir: Path, phase: str) -> tuple[list[dict], list[pd.DataFrame]]:
    path = phase_path(run_dir, phase)
    if not tune.Tuner.can_restore(path):
        return [], []
    analysis = ExperimentAnalysis(path)
    filesystem, _ = pafs.FileSystem.from_uri(path)
    scheme = path.split("://", 1)[0] if "://" in path and not path.startswith("file://") else None
    frames = analysis.trial_dataframes
    rows, curves = [], []
    for trial in analysis.trials:
        config = {k: v for k, v in trial.config.items() if not k.startswith("_")}
        df = frames.get(trial.trial_id)
        if df is not None and not df.empty and rt.EPOCH in df:
            # a trial restarted from a checkpoint repeats the epochs after it: keep each epoch once, the last
            df = df.drop_duplicates(subset=rt.EPOCH, keep="last").sort_values(rt.EPOCH)
        last: dict[str, Any] = {} if df is None or df.empty else df.iloc[-1].to_dict()
        epochs_run = int(last.get(rt.EPOCH, 0) or 0)
        status = _STATUS.get(trial.status)
        if status is None:  # TERMINATED: finished its budget, or stopped early by the pruner
            status = rt.FINISHED if epochs_run >= int(config["epochs"]) else rt.PRUNED
        error, error_type = _error(filesystem, trial.path)
        checkpoint = _checkpoint_uri(trial.checkpoint, scheme)
        parts = [(trial.trial_id, config, last, checkpoint, df)]
        if config.get("family") == "columns":  # a joint baseline: its columns are the single-task rows
            parts = [_column_part(trial.trial_id, trial.config, task, last, checkpoint, df)
                     for task in (t["name"] for t in config["tasks"])]
        for trial_id, row_config, row_last, row_checkpoint, row_df in parts:
            rows.append(
                result_row(
                    trial_id, phase, row_config, row_last, epochs_run=epochs_run, status=status,
                    checkpoint=row_checkpoint, error=error, error_type=error_type,
                    retries=int(trial.num_failures),
                )
            )
            if row_df is not None and not row_df.empty:
                curves.append(rt.curve(row_df, trial_id, phase))
    return rows, curves


def _column_part(
    trial_id: str, config: dict[str, Any], task: str, last: dict[str, Any], checkpoint: str | None, df: pd.DataFrame | None
) -> tuple[str, dict[str, Any], dict[str, Any], str | None, pd.DataFrame | None]:
    """Column ``task`` of a joint baseline trial as the single-task trial it is: its config
    (:func:`column_config`), its task's metrics and loss, its own cost, its checkpoint."""
    prefix = f"{COLUMNS_DIR}/{task}/"

    def own(record: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in record.items() if not (rt.is_reported(k) or k.startswith(COLUMNS_DIR + "/"))}
        out.update(rt.reported(record, task))
        if rt.loss(task) in record:
            out[rt.loss()] = record[rt.loss(task)]
        out.update({k[len(prefix):]: v for k, v in record.items() if k.startswith(prefix)})
        return out

    frame = None
    if df is not None and not df.empty:
        frame = pd.DataFrame([own(r) for r in df.to_dict("records")])
    row_config = {k: v for k, v in column_config(config, task).items() if not k.startswith("_")}
    return (f"{trial_id}_{task}", row_config, own(last), None if checkpoint is None else f"{checkpoint}/{COLUMNS_DIR}/{task}",
            frame)


def _ensemble_row(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / ENSEMBLE_DIR / ENSEMBLE_RESULT
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    metrics = {**result["metrics"], rt.PARAMS: result[rt.PARAMS], **(result.get("cost") or {})}
    return result_row(
        result["trial_id"], rt.BASELINES, result["config"], metrics, epochs_run=result["epochs_run"],
        status=rt.FINISHED, checkpoint=str(path.parent),
    )


def collect_results(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The results and curves tables of a run directory (also while it is running)."""
    run_dir = Path(run_dir).resolve()
    rows: list[dict] = []
    curves: list[pd.DataFrame] = []
    for phase in PHASES:
        r, c = _trial_rows(run_dir, phase)
        rows += r
        curves += c
    ensemble = _ensemble_row(run_dir)
    if ensemble is not None:
        rows.append(ensemble)
    if not rows:
        raise FileNotFoundError(f"No trials found under {str(run_dir)!r}; is it an mtlsearch run directory?")
    race = run_dir / RACE_FILE
    results = add_race(add_delta_m(pd.DataFrame(rows)), json.loads(race.read_text()) if race.is_file() else None)
    curves_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return results, curves_df


def write_results(run_dir: str | Path) -> pd.DataFrame:
    """Collect the tables and write ``results.parquet`` and ``curves.parquet`` atomically."""
    run_dir = Path(run_dir)
    results, curves = collect_results(run_dir)
    with atomic_path(run_dir / RESULTS_FILE) as tmp:
        results.to_parquet(tmp, index=False)
    with atomic_path(run_dir / CURVES_FILE) as tmp:
        curves.to_parquet(tmp, index=False)
    return results
