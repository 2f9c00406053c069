"""Choosing deployable configs: constraints, Pareto fronts and the best per objective."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mtl_models import TaskSpec, delta_m

from ._pareto import pareto_mask
from ._results import metric_column, searched

SELECTABLE_STATUS = ("finished",)


@dataclass(frozen=True)
class Constraints:
    """What a deployable config must satisfy; ``None`` leaves a limit open.

    ``min_metric`` maps a task to the value its primary validation metric must at
    least reach: ``>=`` for higher-is-better metrics (accuracy), ``<=`` for
    lower-is-better ones (MAE), so "min" always means "at least this good".
    """

    max_params: float | None = None
    max_latency_ms: float | None = None
    latency: str = "latency_ms_b1"
    min_metric: dict[str, float] = field(default_factory=dict)
    families: tuple[str, ...] = ()
    include_baselines: bool = False


def select(results: pd.DataFrame, tasks: list[TaskSpec], constraints: Constraints) -> pd.DataFrame:
    """The finished configs that satisfy ``constraints``, best Delta_m first.

    Adds ``pareto_params`` and ``pareto_latency`` (on the front of Delta_m against
    parameters / latency among the qualifying configs) and ``pareto`` (either).
    Raises ``ValueError`` naming the task or family when one is unknown.
    """
    names = [t.name for t in tasks]
    unknown = sorted(set(constraints.min_metric) - set(names))
    if unknown:
        raise ValueError(f"min_metric: unknown task(s) {unknown}; the run's tasks are {names}.")
    if constraints.latency not in ("latency_ms_b1", "latency_ms_bN"):
        raise ValueError(f"latency must be 'latency_ms_b1' or 'latency_ms_bN', got {constraints.latency!r}.")
    pool = results if constraints.include_baselines else searched(results)
    pool = pool[pool["status"].isin(SELECTABLE_STATUS) & (pool["family"] != "single_task")]
    if constraints.families:
        known = sorted(set(results["family"].dropna()))
        bad = sorted(set(constraints.families) - set(known))
        if bad:
            raise ValueError(f"family: {bad} not in this run; its families are {known}.")
        pool = pool[pool["family"].isin(constraints.families)]
    keep = pd.Series(True, index=pool.index)
    if constraints.max_params is not None:
        keep &= pool["params"].astype(float) <= constraints.max_params
    if constraints.max_latency_ms is not None:
        if constraints.latency not in pool or pool[constraints.latency].isna().all():
            raise ValueError(
                f"max_latency_ms: this run has no {constraints.latency!r} column; "
                "regenerate its report (`mtlsearch report RUN`) to measure latency post hoc."
            )
        keep &= pool[constraints.latency].astype(float) <= constraints.max_latency_ms
    specs = {t.name: t for t in tasks}
    for task, bound in constraints.min_metric.items():
        values = pool[metric_column(specs[task])].astype(float)
        keep &= values >= bound if specs[task].higher_is_better else values <= bound
    chosen = pool[keep].copy()
    chosen["pareto_params"] = pareto_mask(chosen, "delta_m", "params") if len(chosen) else []
    has_latency = constraints.latency in chosen and len(chosen) and chosen[constraints.latency].notna().all()
    chosen["pareto_latency"] = pareto_mask(chosen, "delta_m", constraints.latency) if has_latency else False
    chosen["pareto"] = chosen["pareto_params"] | chosen["pareto_latency"]
    return chosen.sort_values("delta_m", ascending=False)


def parse_min_metric(items: list[str]) -> dict[str, float]:
    """``["left=0.8", "right=0.75"]`` -> ``{"left": 0.8, "right": 0.75}``; errors name the bad item."""
    out = {}
    for item in items:
        task, sep, value = item.partition("=")
        try:
            if not sep or not task:
                raise ValueError
            out[task.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--min-metric {item!r}: expected TASK=VALUE, e.g. left=0.8.") from None
    return out


@dataclass(frozen=True)
class Objective:
    """One way to call a config "best", and the trial that is best that way."""

    label: str
    row: pd.Series


def best_per_objective(results: pd.DataFrame, tasks: list[TaskSpec]) -> list[Objective]:
    """The best finished searched config by Delta_m, by each task's metric, and the
    cheapest (parameters, latency at batch 1) among those at least as good as single-task."""
    done = searched(results)
    done = done[(done["status"] == "finished") & done["delta_m"].notna()]
    if done.empty:
        return []
    out = [Objective("best &Delta;<sub>m</sub> (all tasks)", done.loc[done["delta_m"].idxmax()])]
    for spec in tasks:
        column = metric_column(spec)
        if column in done and done[column].notna().any():
            index = done[column].idxmax() if spec.higher_is_better else done[column].idxmin()
            out.append(Objective(f"best {spec.name} {spec.metric_name}", done.loc[index]))
    good = done[done["delta_m"] >= 0]
    for column, label in (("params", "fewest parameters"), ("latency_ms_b1", "fastest at batch 1")):
        if column in good and good[column].notna().any():
            out.append(Objective(f"{label} with &Delta;<sub>m</sub> &ge; 0", good.loc[good[column].astype(float).idxmin()]))
    return out


def delta_vs(row: pd.Series | dict[str, Any], reference: pd.Series | dict[str, Any], tasks: list[TaskSpec], split: str = "val") -> float:
    """Delta_m of ``row`` with ``reference``'s metrics as the baseline (e.g. vs the ensemble)."""
    def metrics(r: Any) -> dict[str, float]:
        out = {}
        for t in tasks:
            v = r.get(metric_column(t, split))
            out[t.name] = math.nan if v is None or pd.isna(v) else float(v)
        return out

    return delta_m(metrics(row), metrics(reference), {t.name: t.higher_is_better for t in tasks})
