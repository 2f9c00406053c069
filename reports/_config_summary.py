"""A config over its seeds: one row per config with its Delta_m, per-task terms and every
reference's interval (the noise model is :mod:`._stats`'s)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

from mtl_models import TaskSpec
from mtl_models import results_table as rt

from ._results import metric_column
from ._stats import LEVEL, BaselineNoise, Estimate, Reference, _std

delta_column = rt.delta_column  # ``delta_m`` on validation, ``test_delta_m``

def config_summary(
    rows: pd.DataFrame,
    tasks: Sequence[TaskSpec],
    noise: BaselineNoise,
    ensemble: Reference | pd.Series | None = None,
    default: Reference | Sequence[float] = (),
    max_task_drop: str | float | None = "noise",
    *,
    level: float = LEVEL,
    references: dict[str, Reference] | None = None,
) -> pd.DataFrame:
    """One row per config (``config_key``) of ``rows`` (finished trials), best mean Delta_m first,
    on ``noise.split`` (rows without metrics on it are left out).

    Columns: ``config_key``, ``trial_id`` (the config's representative run, the one to
    export: the run whose Delta_m is nearest the config's mean), ``best_trial_id`` (its
    best run), ``trial_ids``, ``seeds``, ``seed_list``, ``family``, ``config``,
    ``reference``, cost columns (their mean), ``delta_m`` (mean) with
    ``delta_m_std``/``_low``/``_high``/``approximate``, each task's metric mean and
    ``:std``, its term ``term/<task>`` (relative gain %) with ``:low``/``:high`` and
    ``contribution/<task>`` (its share of Delta_m, term / T), ``vs_ensemble`` and
    ``vs_default`` with bounds, ``verdict_single``/``_ensemble``/``_default`` (+1/0/-1),
    ``task_drop_ok`` and ``dropped`` (the tasks that break ``max_task_drop``), and
    ``estimates`` (the :class:`Estimate` objects, for callers that format them). Delta_m
    intervals are at ``level`` (a simultaneous level for the best of k), task terms at 95 %.
    ``references``: further references by name (a confirmation row's ``reference`` value
    other than ``default``), each compared like the default: ``vs_<name>`` with bounds,
    ``verdict_<name>`` and ``estimates[<name>]``.
    """
    out = []
    if rows.empty:
        return pd.DataFrame()
    split = noise.split
    column = delta_column(split)
    rows = rows.copy()
    if column not in rows:
        rows[column] = [noise.row_delta(r) for _, r in rows.iterrows()]
    rows = rows[rows[column].notna()]
    if rows.empty:
        return pd.DataFrame()
    if isinstance(ensemble, pd.Series):
        value = noise.row_delta(ensemble)
        ensemble = Reference((value,), label="ensemble") if not math.isnan(value) else None
    if not isinstance(default, Reference):
        default = Reference(tuple(float(d) for d in default), label="default")
    for key, group in rows.groupby("config_key", sort=False):
        group = group.sort_values(column, ascending=False)
        first = group.iloc[0]
        deltas = [float(d) for d in group[column]]
        seeds = [int(s) for s in group["seed"]] if "seed" in group and group["seed"].notna().all() else None
        estimate = noise.vs_single(deltas, seeds, level)
        nearest = min(range(len(deltas)), key=lambda i: (abs(deltas[i] - estimate.mean), i))
        record: dict[str, Any] = {
            "config_key": key,
            "trial_id": group.iloc[nearest]["trial_id"],
            "best_trial_id": first["trial_id"],
            "trial_ids": list(group["trial_id"]),
            "seeds": len(group),
            "seed_list": [int(s) for s in group["seed"] if not pd.isna(s)] if "seed" in group else [],
            "family": first["family"],
            "config": first["config"],
            "reference": first.get("reference"),
            "delta_m": estimate.mean,
            "delta_m_std": estimate.std,
            "delta_m_low": estimate.low,
            "delta_m_high": estimate.high,
            "approximate": estimate.approximate,
            "verdict_single": estimate.verdict,
        }
        for cost in (*rt.COST_COLUMNS, *rt.BUDGET_COLUMNS):
            if cost in group:
                values = group[cost].dropna()
                record[cost] = (values.iloc[0] if cost == rt.COST_DEVICE else float(values.astype(float).mean())) if len(values) else None
        estimates = {"delta_m": estimate}
        dropped = []
        for spec in tasks:
            metric = metric_column(spec, split)
            values = [float(v) for v in group[metric]] if metric in group else []
            finite = [v for v in values if not math.isnan(v)]
            record[metric] = sum(finite) / len(finite) if finite else math.nan
            record[rt.std(metric)] = _std(finite)
            term = noise.task_vs_single(spec, values, seeds if len(values) == len(group) else None)
            estimates[spec.name] = term
            record[f"term/{spec.name}"] = term.mean
            record[f"term/{spec.name}:low"] = term.low
            record[f"term/{spec.name}:high"] = term.high
            record[f"contribution/{spec.name}"] = term.mean / len(tasks)
            if _drops(term, max_task_drop):
                dropped.append(spec.name)
        record["dropped"] = dropped
        record["task_drop_ok"] = not dropped
        if ensemble is not None and ensemble.values:
            vs = noise.vs_reference(deltas, ensemble, None, level)
            estimates["ensemble"] = vs
            record.update(vs_ensemble=vs.mean, vs_ensemble_low=vs.low, vs_ensemble_high=vs.high,
                          verdict_ensemble=vs.verdict)
        if default.values and first.get("reference") != "default":  # not the default against itself
            vs = noise.vs_reference(deltas, default, seeds, level)
            estimates["default"] = vs
            record.update(vs_default=vs.mean, vs_default_low=vs.low, vs_default_high=vs.high,
                          verdict_default=vs.verdict)
        for name, other in (references or {}).items():
            if other.values and name not in ("delta_m", "ensemble", "default") and first.get("reference") != name:
                vs = noise.vs_reference(deltas, other, seeds, level)
                estimates[name] = vs
                record.update({f"vs_{name}": vs.mean, f"vs_{name}_low": vs.low, f"vs_{name}_high": vs.high,
                               f"verdict_{name}": vs.verdict})
        record["estimates"] = estimates
        out.append(record)
    table = pd.DataFrame(out)
    return table.sort_values("delta_m", ascending=False, na_position="last").reset_index(drop=True)


def _drops(term: Estimate, max_task_drop: str | float | None) -> bool:
    """Whether a task's term breaks the guardrail: beyond its noise (``noise``: the interval
    lies below 0), or more than ``max_task_drop`` percent (the mean)."""
    if max_task_drop is None or math.isnan(term.mean):
        return False
    if max_task_drop == "noise":
        return term.verdict < 0
    return term.mean < -float(max_task_drop)

