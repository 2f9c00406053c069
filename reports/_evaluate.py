"""Post-hoc evaluation of a run's shortlist: test metrics, per-class accuracy, missing costs.

The search chooses on the validation split only. The test split is evaluated here,
after the fact and only for the shortlisted configs (the best per objective and the
Pareto-optimal ones) and the baselines they are compared with, so that test numbers
never steer the search and the report can say which configs they exist for.

Results are cached in ``RUN/evaluations.parquet`` (long format: ``trial_id``,
``checkpoint``, ``split``, ``task``, ``metric``, ``value``), keyed by trial and
checkpoint path, so regenerating a report evaluates only what is new. Rows:

- ``split`` ``test``: each task's metrics (``metric`` = the task kind's metric names);
- ``split`` ``test`` (or ``val`` without a test split), classification tasks:
  ``class_accuracy/<c>`` and ``class_count/<c>`` (labelled examples of class ``c``);
- ``trial_id`` ``train-labels``, ``split`` ``train``: ``class_count/<c>`` of the train split;
- ``split`` ``cost``: parameters, FLOPs and latency measured here for trials whose
  run predates cost measurement (``cost_device`` says where);
- ``trial_id`` ``ensemble/<i>``, ``split`` ``val`` and ``test``: the ensemble composed
  from the ``i``-th cyclic window of single-task seed members (``reports._stats``:
  :func:`cyclic_compositions`; composition 0 is the run's own ensemble, not repeated
  here), so the ensemble's comparison carries its seed noise.

Every confirmation run and every single-task seed is evaluated on test (the verdict is
judged there); each evaluation is one pass over the split, cached.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import torch

from mtl_models import (
    MultiTaskData,
    Split,
    TaskSpec,
    atomic_path,
    build_model,
    load_checkpoint_state,
    measure_cost,
    report_progress,
)
from mtl_models.data import iterate_batches
from mtl_models import results_table as rt

from ._pareto import pareto_mask
from ._results import confirmed, ensemble_row, finished, full_seeds, metric_column, searched, single_task_rows
from ._stats import cyclic_compositions

EVALUATIONS_FILE = "evaluations.parquet"
TRAIN_LABELS = "train-labels"
COMPOSITION = "ensemble/"
COST_METRICS = tuple(c for c in rt.COST_COLUMNS if c != rt.COST_DEVICE)  # the numeric ones
_COLUMNS = ["trial_id", "checkpoint", "split", "task", "metric", "value"]
log = logging.getLogger("mtlsearch.reports")


def shortlist(results: pd.DataFrame, tasks: list[TaskSpec], top_k: int = 3, limit: int = 8) -> list[str]:
    """Trials worth a test evaluation: every finished confirmation trial of a config that ran
    every seed (the configs the report ranks, over their seeds), then searched ones: the best by Delta_m and per task,
    the Pareto front of Delta_m against parameters and against latency, and the ``top_k``
    by Delta_m, at most ``limit`` of these, best Delta_m first."""
    confirm = list(full_seeds(finished(confirmed(results)))["trial_id"])
    done = finished(searched(results)).sort_values("delta_m", ascending=False)
    if done.empty:
        return confirm
    chosen: list[str] = list(done["trial_id"].head(top_k))
    for spec in tasks:
        column = metric_column(spec)
        if column in done and done[column].notna().any():
            best = done[column].idxmax() if spec.higher_is_better else done[column].idxmin()
            chosen.append(done.loc[best, "trial_id"])
    for cost in (rt.PARAMS, rt.LATENCY_B1):
        if cost in done and done[cost].notna().all():
            chosen += list(done.loc[pareto_mask(done, "delta_m", cost), "trial_id"])
    order = {t: i for i, t in enumerate(done["trial_id"])}
    unique = sorted(set(chosen), key=order.__getitem__)
    return confirm + unique[:limit]


def baseline_ids(results: pd.DataFrame) -> list[str]:
    """The finished single-task trials and the ensemble: what test Delta_m is measured against."""
    rows = rt.baseline_rows(results)
    return [t for t in rows["trial_id"] if isinstance(t, str)]


def load_evaluations(run_dir: str | Path) -> pd.DataFrame:
    """The cached evaluations of a run (empty when none were made)."""
    path = Path(run_dir) / EVALUATIONS_FILE
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=_COLUMNS)


def update_evaluations(
    run_dir: str | Path,
    results: pd.DataFrame,
    tasks: list[TaskSpec],
    load_data: Callable[[], MultiTaskData] | None,
    trial_ids: Iterable[str],
) -> pd.DataFrame:
    """Evaluate the ``trial_ids`` not yet in the cache, backfill missing costs; return the cache.

    ``load_data`` is called only when something needs data (``None``: no data can be
    loaded, so only costs are backfilled). The cache is rewritten atomically.
    """
    run_dir = Path(run_dir)
    cached = load_evaluations(run_dir)
    have = set(zip(cached["trial_id"], cached["checkpoint"].fillna(""), cached["split"]))
    rows = results.set_index("trial_id", drop=False)
    new: list[dict[str, Any]] = []

    for trial_id, row in rows.iterrows():
        if _needs_cost(row) and (trial_id, _checkpoint(row), "cost") not in have:
            new += _cost_rows(row)

    todo = [
        t for t in dict.fromkeys(trial_ids)
        if t in rows.index and _checkpoint(rows.loc[t]) and not _evaluated(have, t, _checkpoint(rows.loc[t]))
    ]
    if todo and load_data is not None:
        log.info("Loading the data to evaluate %d trial(s) ...", len(todo))
        data = load_data()
        eval_split = "test" if "test" in data.splits and len(data.splits["test"]) else "val"
        if (TRAIN_LABELS, "", "train") not in have:
            new += _label_rows(data.splits["train"], tasks)
        for done, trial_id in enumerate(todo, 1):
            new += _evaluation_rows(rows.loc[trial_id], data, eval_split)
            report_progress(log, f"evaluating on {eval_split}", done, len(todo),
                            f"evaluated {done}/{len(todo)} trials on {eval_split} ({trial_id})")
    compositions = [c for c in _composition_members(results) if (f"{COMPOSITION}{c[0]}", "", "val") not in have]
    if compositions and load_data is not None:
        data = data if todo else load_data()
        for done, (index, config, members) in enumerate(compositions, 1):
            new += _composition_rows(index, config, members, data)
            report_progress(log, "ensemble compositions", done, len(compositions),
                            f"evaluated {done}/{len(compositions)} ensemble compositions")

    if not new:
        return cached
    fresh = pd.DataFrame(new, columns=_COLUMNS)
    keys = set(zip(fresh["trial_id"], fresh["split"]))
    keep = cached[[(t, s) not in keys for t, s in zip(cached["trial_id"], cached["split"])]]
    table = pd.concat([keep, fresh], ignore_index=True) if len(keep) else fresh
    with atomic_path(run_dir / EVALUATIONS_FILE) as tmp:
        table.to_parquet(tmp, index=False)
    return table


def _composition_members(results: pd.DataFrame) -> list[tuple[int, dict[str, Any], dict[str, list[str]]]]:
    """The ensemble's compositions beyond the run's own: (index, config, member checkpoints per task)."""
    ensemble = ensemble_row(results)
    if ensemble is None or pd.isna(ensemble.get("ensemble_size")) or not isinstance(ensemble.get("config"), str):
        return []
    size = int(ensemble["ensemble_size"])
    paths = {}
    for name in {t for t in single_task_rows(results)["task"] if isinstance(t, str)}:
        rows = single_task_rows(results, name)
        paths[name] = [c for c in rows["checkpoint"] if isinstance(c, str)]
    if not paths:
        return []
    seeds = min(len(p) for p in paths.values())
    config = json.loads(ensemble["config"])
    return [(i, config, {t: [p[m] for m in window] for t, p in paths.items()})
            for i, window in enumerate(cyclic_compositions(seeds, size)) if i > 0]


def _composition_rows(index: int, config: dict[str, Any], members: dict[str, list[str]], data: MultiTaskData) -> list[dict[str, Any]]:
    model = build_model(config)
    for task, paths in members.items():
        for member, path in zip(model.members[task], paths):
            member.load_state_dict(load_checkpoint_state(path)["model"])
    model.eval()
    out = []
    for split in ("val", "test"):
        if split not in data.splits or not len(data.splits[split]):
            continue
        metrics, _ = metrics_and_class_counts(model, data.splits[split])
        for task, values in metrics.items():
            out += [{"trial_id": f"{COMPOSITION}{index}", "checkpoint": "", "split": split, "task": task,
                     "metric": m, "value": float(v)} for m, v in values.items()]
    return out


def composition_table(evaluations: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """The ensemble's compositions, one row each (``composition``, ``val/...``, ``test/...``):
    composition 0 is the run's ensemble row, the others from the cache. Empty without an ensemble."""
    ensemble = ensemble_row(results)
    if ensemble is None:
        return pd.DataFrame()
    rows = [ensemble.to_dict() | {"composition": 0}]
    extra = evaluations[evaluations["trial_id"].astype(str).str.startswith(COMPOSITION)]
    for trial_id, group in extra.groupby("trial_id"):
        row = {rt.metric(s, t, m): v for s, t, m, v in zip(group["split"], group["task"], group["metric"], group["value"])}
        rows.append(row | {"composition": int(str(trial_id)[len(COMPOSITION):])})
    return pd.DataFrame(rows).sort_values("composition").reset_index(drop=True)


def _checkpoint(row: pd.Series) -> str:
    value = row.get("checkpoint")
    return value if isinstance(value, str) else ""


def _evaluated(have: set[tuple[str, str, str]], trial_id: str, checkpoint: str) -> bool:
    return (trial_id, checkpoint, "test") in have or (trial_id, checkpoint, "val") in have


def _needs_cost(row: pd.Series) -> bool:
    value = row.get(rt.FLOPS)
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cost_rows(row: pd.Series) -> list[dict[str, Any]]:
    config = json.loads(row["config"])
    model = build_model(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: steadier on a shared machine than competing for all cores
    try:
        cost = measure_cost(model, config["input"], int(config.get("batch_size", 128)))
    finally:
        torch.set_num_threads(threads)
    base = {"trial_id": row["trial_id"], "checkpoint": _checkpoint(row), "split": "cost", "task": ""}
    out = [{**base, "metric": k, "value": float(getattr(cost, k))} for k in COST_METRICS]
    out.append({**base, "metric": f"{rt.COST_DEVICE}={cost.device} (post hoc, 1 thread)", "value": math.nan})
    return out


def _load_model(row: pd.Series) -> torch.nn.Module:
    model = build_model(json.loads(row["config"]))
    model.load_state_dict(load_checkpoint_state(row["checkpoint"])["model"])
    return model.eval()


def _evaluation_rows(row: pd.Series, data: MultiTaskData, eval_split: str) -> list[dict[str, Any]]:
    model = _load_model(row)
    base = {"trial_id": row["trial_id"], "checkpoint": _checkpoint(row)}
    metrics, classes = metrics_and_class_counts(model, data.splits[eval_split])
    out = []
    if eval_split == "test":
        for task, values in metrics.items():
            out += [{**base, "split": "test", "task": task, "metric": m, "value": float(v)} for m, v in values.items()]
    for task, (correct, count) in classes.items():
        for c in range(len(count)):
            out.append({**base, "split": eval_split, "task": task, "metric": f"class_count/{c}", "value": float(count[c])})
            out.append(
                {
                    **base,
                    "split": eval_split,
                    "task": task,
                    "metric": f"class_accuracy/{c}",
                    "value": float(correct[c] / count[c]) if count[c] else math.nan,
                }
            )
    return out


def _label_rows(split: Split, tasks: list[TaskSpec]) -> list[dict[str, Any]]:
    out = []
    for spec in tasks:
        if spec.kind != "classification":
            continue
        target = split.targets[spec.name]
        counts = torch.bincount(target[target >= 0].long().cpu(), minlength=int(spec.classes))
        out += [
            {"trial_id": TRAIN_LABELS, "checkpoint": "", "split": "train", "task": spec.name,
             "metric": f"class_count/{c}", "value": float(n)}
            for c, n in enumerate(counts.tolist())
        ]
    return out


@torch.no_grad()
def metrics_and_class_counts(
    model: Any, split: Split, batch_size: int = 256
) -> tuple[dict[str, dict[str, float]], dict[str, tuple[list[int], list[int]]]]:
    """In one pass over ``split``: each task's metrics (as :func:`mtl_models.evaluate`) and, for
    each classification task, (correct, labelled) counts per class."""
    model.eval()
    device = next(model.parameters()).device
    states = {s.name: s.kind_impl.metric_state(s, device) for s in model.tasks}
    specs = [s for s in model.tasks if s.kind == "classification"]
    correct = {s.name: torch.zeros(int(s.classes), dtype=torch.long) for s in specs}
    count = {s.name: torch.zeros(int(s.classes), dtype=torch.long) for s in specs}
    for x, targets in iterate_batches(split, batch_size, device=device):
        outputs = model(x)
        for name, state in states.items():
            state.update(outputs[name].float(), targets[name])
        for s in specs:
            target = targets[s.name].cpu()
            valid = target >= 0
            pred = outputs[s.name].argmax(dim=1).cpu()
            count[s.name] += torch.bincount(target[valid], minlength=int(s.classes))
            correct[s.name] += torch.bincount(target[valid & (pred == target)], minlength=int(s.classes))
    metrics = {name: state.compute() for name, state in states.items()}
    return metrics, {s.name: (correct[s.name].tolist(), count[s.name].tolist()) for s in specs}


def per_class_counts(model: Any, split: Split, batch_size: int = 256) -> dict[str, tuple[list[int], list[int]]]:
    """For each classification task of ``model``: (correct, labelled) counts per class on ``split``."""
    return metrics_and_class_counts(model, split, batch_size)[1]


def test_columns(evaluations: pd.DataFrame) -> pd.DataFrame:
    """``test/<task>/<metric>`` columns per trial (index ``trial_id``) from the cache."""
    test = evaluations[(evaluations["split"] == "test") & ~evaluations["metric"].str.startswith("class_")]
    if test.empty:
        return pd.DataFrame()
    test = test.assign(column=[rt.test(t, m) for t, m in zip(test["task"], test["metric"])])
    return test.pivot_table(index="trial_id", columns="column", values="value", aggfunc="last")


def cost_columns(evaluations: pd.DataFrame) -> pd.DataFrame:
    """Post-hoc cost columns per trial (index ``trial_id``), with ``cost_device`` noting where."""
    cost = evaluations[evaluations["split"] == "cost"]
    if cost.empty:
        return pd.DataFrame()
    values = cost[cost["metric"].isin(COST_METRICS)].pivot_table(
        index="trial_id", columns="metric", values="value", aggfunc="last"
    )
    device = cost[cost["metric"].str.startswith(rt.COST_DEVICE + "=")].set_index("trial_id")["metric"]
    values[rt.COST_DEVICE] = device.str.slice(len(rt.COST_DEVICE + "=")).reindex(values.index)
    return values
