"""Everything a report knows about one run, loaded from its directory alone."""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from mtl_models import MultiTaskData, TaskSpec
from mtl_models import results_table as rt

from ._evaluate import (
    TRAIN_LABELS,
    baseline_ids,
    composition_table,
    cost_columns,
    load_evaluations,
    shortlist,
    test_columns,
    update_evaluations,
)
from ._results import AFFINITY_FILE, add_delta_m, load_results, single_task_summary, task_specs
from ._pick import Pick
from ._select import deploy_pick


@dataclass
class RunData:
    """One run's tables and metadata, with the post-hoc test evaluation merged in.

    ``results`` gains ``test/<task>/<metric>`` and ``test_delta_m`` for the
    shortlisted trials and baselines, and cost columns measured post hoc where the
    run has none. ``shortlist`` lists the trial ids whose test split was evaluated.
    """

    name: str
    run_dir: Path
    results: pd.DataFrame
    curves: pd.DataFrame
    tasks: list[TaskSpec]
    experiment: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    evaluations: pd.DataFrame = field(default_factory=pd.DataFrame)
    shortlist: list[str] = field(default_factory=list)
    eval_split: str | None = None  # "test", or "val" when the data has no test split
    notes: list[str] = field(default_factory=list)

    @property
    def single(self) -> dict[str, Any]:
        """The single-task baseline as one row (mean over seeds)."""
        return single_task_summary(self.results)

    @functools.cached_property
    def affinity(self) -> dict[str, Any] | None:
        """The task-affinity stage's result (``affinity.json``), when the run has one."""
        return _read_json(self.run_dir / AFFINITY_FILE) or None

    @property
    def max_task_drop(self) -> str | float | None:
        """The experiment's ``select.max_task_drop`` (default ``noise``)."""
        return (self.experiment.get("select") or {}).get("max_task_drop", "noise")

    @property
    def labelled(self) -> dict[str, dict[str, int]]:
        """Labelled examples per split and task (``{split: {task: n}}``), from ``run.json``'s label summary."""
        out: dict[str, dict[str, int]] = {}
        for key, entry in (self.info.get("labels") or {}).items():
            split, _, task = key.partition("/")
            if isinstance(entry, dict) and entry.get("labelled") is not None:
                out.setdefault(split, {})[task] = int(entry["labelled"])
        return out

    @property
    def compositions(self) -> pd.DataFrame:
        """The ensemble's compositions from different seed members (val and test metrics)."""
        return composition_table(self.evaluations, self.results)

    @functools.cached_property
    def pick(self) -> Pick:
        """The ranked configs (confirmed ones when there are) on validation, the deploy
        candidate, and its verdict on the test split when evaluated."""
        return deploy_pick(self.results, self.tasks, self.max_task_drop, compositions=self.compositions,
                           labelled=self.labelled)

    @property
    def stage_names(self) -> list[str]:
        """The backbone's stage names (``conv1``, ...), from the experiment; empty when unknown."""
        if not self.experiment:
            return []
        from spaces import Experiment

        try:
            return Experiment.model_validate(self.experiment).stage_names()
        except ValueError:
            return []

    @property
    def has_test(self) -> bool:
        return self.eval_split == "test" and any(rt.is_metric(c, rt.TEST) for c in self.results.columns)


def load_run(
    run_dir: str | Path, evaluate: bool = True, name: str | None = None, also: Sequence[str] = ()
) -> RunData:
    """Load a run directory's tables; with ``evaluate``, evaluate the shortlist (and the
    trials in ``also``) on the test split, cached in ``RUN/evaluations.parquet``."""
    run_dir = Path(run_dir)
    results, curves = load_results(run_dir)
    tasks = task_specs(results)
    experiment = _read_json(run_dir / "experiment.json")
    info = _read_json(run_dir / "run.json")
    run = RunData(
        name=name or experiment.get("name") or run_dir.name,
        run_dir=run_dir,
        results=results,
        curves=curves,
        tasks=tasks,
        experiment=experiment,
        info=info,
    )
    chosen = shortlist(results, tasks)
    if evaluate:
        loader = data_loader(run_dir) if experiment else None
        if loader is None:
            run.notes.append("No experiment.json in the run directory: the test split could not be evaluated.")
        evaluations = update_evaluations(run_dir, results, tasks, loader, chosen + list(also) + baseline_ids(results))
    else:
        evaluations = load_evaluations(run_dir)
    run.evaluations = evaluations
    run.results = _merge(results, evaluations, tasks)
    evaluated_splits = set(evaluations.loc[evaluations["split"].isin(["test", "val"]), "split"])
    run.eval_split = "test" if "test" in evaluated_splits else ("val" if evaluated_splits else None)
    if run.eval_split == "val":
        run.notes.append("The data has no test split: per-class accuracy is on the validation split.")
    done = set(evaluations.loc[evaluations["split"] == run.eval_split, "trial_id"]) if run.eval_split else set()
    run.shortlist = [t for t in chosen if t in done]
    return run


EXPORTS_FILE = "exports.json"


def read_exports(run_dir: str | Path) -> list[dict[str, Any]]:
    """The bundles exported from this run, oldest first (``RUN/exports.json``; empty when none)."""
    path = Path(run_dir) / EXPORTS_FILE
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def record_export(run_dir: str | Path, entry: dict[str, Any]) -> None:
    """Append ``entry`` (trial_id, out, time) to ``RUN/exports.json``, so the report can show
    the exported run; a run directory that cannot be written is left as it is, with a warning."""
    import warnings

    from mtl_models import atomic_write_json

    try:
        atomic_write_json(Path(run_dir) / EXPORTS_FILE, [*read_exports(run_dir), entry])
    except OSError as exc:
        warnings.warn(f"Could not record the export in {Path(run_dir) / EXPORTS_FILE}: {exc}", stacklevel=2)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def data_loader(run_dir: Path) -> Callable[[], MultiTaskData]:
    """Loads the run's data only when called (regenerating a report from the cache needs none)."""

    def load() -> MultiTaskData:
        from spaces import load_experiment

        return load_experiment(run_dir / "experiment.json").load_data()

    return load


def _merge(results: pd.DataFrame, evaluations: pd.DataFrame, tasks: list[TaskSpec]) -> pd.DataFrame:
    results = results.copy()
    cost = cost_columns(evaluations)
    if not cost.empty:
        for column in cost.columns:
            if column not in results:
                results[column] = None
            posthoc = results["trial_id"].map(cost[column])
            missing = results[column].isna()
            results[column] = results[column].astype(object).where(~missing, posthoc)
        for column in cost.columns:
            if column != rt.COST_DEVICE:
                results[column] = pd.to_numeric(results[column], errors="coerce")
    test = test_columns(evaluations)
    if test.empty:
        return results
    for column in test.columns:
        results[column] = results["trial_id"].map(test[column])
    return add_delta_m(results, split=rt.TEST, column=rt.TEST_DELTA_M)


def class_table(run: RunData, trial_ids: list[str]) -> pd.DataFrame:
    """Per-class accuracy of ``trial_ids`` on the evaluated split, with train label counts.

    Columns: ``trial_id``, ``task``, ``class``, ``accuracy``, ``count`` (labelled
    examples in the evaluated split), ``train_count``.
    """
    ev = run.evaluations
    if ev.empty or run.eval_split is None:
        return pd.DataFrame()
    rows = ev[(ev["split"] == run.eval_split) & ev["trial_id"].isin(trial_ids) & ev["metric"].str.startswith("class_")]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(kind=rows["metric"].str.split("/").str[0], cls=rows["metric"].str.split("/").str[1].astype(int))
    wide = rows.pivot_table(index=["trial_id", "task", "cls"], columns="kind", values="value", aggfunc="last").reset_index()
    wide = wide.rename(columns={"cls": "class", "class_accuracy": "accuracy", "class_count": "count"})
    train = ev[(ev["trial_id"] == TRAIN_LABELS) & (ev["split"] == "train")]
    counts = {(r.task, int(r.metric.split("/")[1])): r.value for r in train.itertuples()}
    wide["train_count"] = [counts.get((t, c), math.nan) for t, c in zip(wide["task"], wide["class"])]
    return wide
