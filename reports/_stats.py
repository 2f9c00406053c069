"""Seed noise and 95 % intervals: every number that ranks configs, with the noise it carries.

The single-task baseline is trained with several seeds (``baselines.seeds``), so each
task's seed spread is measured. On task ``t`` a run's *term* is its relative gain over
the baseline mean ``B_t``, ``100 (-1)^{l_t} (M_t - B_t) / B_t`` (percent), and Delta_m is
the mean of the terms over tasks (Maninis et al. 2019).

A config's estimate is the mean over its runs (its seeds) of Delta_m, or of a term,
with a Welch interval for the difference from the baseline: the config's runs on one
side, the baseline's seeds on the other (the mean ``B_t`` is itself an estimate), with
Welch-Satterthwaite degrees of freedom. Single-task networks are trained per task
independently, so the baseline's Delta_m variance is the sum of its tasks' term
variances over ``T^2``; a config's runs are taken as they are (their tasks move
together). A config trained once has no spread of its own: its run is assumed as noisy
as one run of the single-task networks (one seed of each), and its interval says
``approximate``. The ensemble is one composition of single-task networks; it is
compared as a fixed reference (its own seed noise is not in the interval).

An interval entirely above 0 is a difference beyond the noise; one that contains 0 is
no difference at this budget; the report says which, in words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pandas as pd
from scipy import stats

from mtl_models import COST_COLUMNS, TaskSpec

from ._results import metric_column, row_metrics, task_values

LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A difference from a reference (Delta_m points, or a task's relative gain in %), with
    its 95 % interval. ``runs``: the config's runs averaged; ``std``: their spread (None
    for one run); ``approximate``: one run, its noise taken from the single-task seeds."""

    mean: float
    low: float
    high: float
    runs: int
    std: float | None = None
    approximate: bool = False

    @property
    def verdict(self) -> int:
        """+1 better beyond the noise, -1 worse beyond it, 0 not distinguishable (or unknown)."""
        if math.isnan(self.low) or math.isnan(self.high):
            return 0
        return 1 if self.low > 0 else (-1 if self.high < 0 else 0)

    @property
    def measured(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def text(self, unit: str = "") -> str:
        """``+1.23 [-0.51, +2.97]`` (``+1.23`` with ``[noise unknown]`` when it is)."""
        if math.isnan(self.mean):
            return "n/a"
        if not self.measured:
            return f"{self.mean:+.2f}{unit} [noise unknown]"
        return f"{self.mean:+.2f}{unit} [{self.low:+.2f}, {self.high:+.2f}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": _plain(self.mean), "low": _plain(self.low), "high": _plain(self.high), "level": LEVEL,
            "runs": self.runs, "std": _plain(self.std), "approximate": self.approximate,
        }


def _plain(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def welch(mean: float, parts: Sequence[tuple[float, int]], level: float = LEVEL) -> tuple[float, float]:
    """The ``level`` interval around ``mean`` whose squared standard error is the sum of the
    ``parts`` ``(variance of the mean, degrees of freedom)`` (Welch-Satterthwaite).
    NaN bounds when a part's noise is unmeasured (no degrees of freedom)."""
    if math.isnan(mean) or any(df < 1 or math.isnan(v) for v, df in parts):
        return math.nan, math.nan
    se2 = sum(v for v, _ in parts)
    if se2 <= 0:
        return mean, mean
    dof = se2**2 / sum(v**2 / df for v, df in parts if v > 0)
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(se2)
    return mean - half, mean + half


def _var(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return sum((v - mean) ** 2 for v in values) / (n - 1)


class BaselineNoise:
    """The single-task baseline's seed noise: per task its mean ``B_t``, the variance of one
    seed's term and the number of seeds (from the results table's finished single-task trials)."""

    def __init__(self, results: pd.DataFrame, tasks: Sequence[TaskSpec], split: str = "val") -> None:
        self.tasks = list(tasks)
        self.split = split
        self.mean: dict[str, float] = {}
        self.var: dict[str, float] = {}
        self.seeds: dict[str, int] = {}
        for spec in self.tasks:
            values = task_values(results, spec, split)
            if not values:
                continue
            self.mean[spec.name] = sum(values) / len(values)
            self.seeds[spec.name] = len(values)
            self.var[spec.name] = _var([self.term(spec, v) for v in values])

    @property
    def complete(self) -> bool:
        return len(self.mean) == len(self.tasks)

    @property
    def min_seeds(self) -> int:
        return min(self.seeds.values()) if self.seeds else 0

    def term(self, spec: TaskSpec, value: float) -> float:
        """A value's relative gain over ``B_t`` in percent, signed so that positive is better."""
        base = self.mean.get(spec.name, math.nan)
        if not (math.isfinite(value) and math.isfinite(base)) or base == 0:
            return math.nan
        sign = 1.0 if spec.higher_is_better else -1.0
        return 100.0 * sign * (value - base) / base

    def run_var(self) -> float:
        """The variance of one run's Delta_m (one seed of every single-task network)."""
        t = len(self.tasks)
        return sum(self.var[s.name] for s in self.tasks) / t**2 if self.complete else math.nan

    def mean_parts(self) -> list[tuple[float, int]]:
        """The baseline mean's share of a Delta_m difference's variance, per task, with its dof."""
        t = len(self.tasks)
        return [(self.var[s.name] / (t**2 * self.seeds[s.name]), self.seeds[s.name] - 1) for s in self.tasks]

    def metric_std(self, spec: TaskSpec) -> float | None:
        """The standard deviation of one single-task run's metric on ``spec`` over the seeds
        (None with fewer than two)."""
        if self.seeds.get(spec.name, 0) < 2:
            return None
        return math.sqrt(self.var[spec.name]) * abs(self.mean[spec.name]) / 100.0

    def vs_single(self, deltas: Sequence[float]) -> Estimate:
        """A config's Delta_m runs against the single-task baseline (mean and interval)."""
        deltas = [d for d in deltas if not math.isnan(d)]
        if not deltas or not self.complete:
            return Estimate(math.nan, math.nan, math.nan, len(deltas))
        mean = sum(deltas) / len(deltas)
        own, approximate = self._own(deltas, self.run_var())
        low, high = welch(mean, [own, *self.mean_parts()])
        return Estimate(mean, low, high, len(deltas), _std(deltas), approximate)

    def task_vs_single(self, spec: TaskSpec, values: Sequence[float]) -> Estimate:
        """A config's runs of task ``spec``'s metric as terms (relative gain, %) against single-task."""
        terms = [self.term(spec, v) for v in values]
        terms = [x for x in terms if not math.isnan(x)]
        if not terms or spec.name not in self.mean:
            return Estimate(math.nan, math.nan, math.nan, len(terms))
        mean = sum(terms) / len(terms)
        seeds = self.seeds[spec.name]
        own, approximate = self._own(terms, self.var[spec.name])
        low, high = welch(mean, [own, (self.var[spec.name] / seeds, seeds - 1)])
        return Estimate(mean, low, high, len(terms), _std(terms), approximate)

    def _own(self, runs: Sequence[float], one_run_var: float) -> tuple[tuple[float, int], bool]:
        """The config side of a difference: its mean's variance and dof; one run borrows the baseline's."""
        if len(runs) > 1:
            return (_var(runs) / len(runs), len(runs) - 1), False
        return (one_run_var, self.min_seeds - 1), True

    def vs_reference(self, deltas: Sequence[float], reference: Sequence[float]) -> Estimate:
        """A config's Delta_m runs against another config's (the ensemble: one value; the
        no-search default: its own runs)."""
        deltas = [d for d in deltas if not math.isnan(d)]
        reference = [r for r in reference if not math.isnan(r)]
        if not deltas or not reference:
            return Estimate(math.nan, math.nan, math.nan, len(deltas))
        mean = sum(deltas) / len(deltas) - sum(reference) / len(reference)
        own, approximate = self._own(deltas, self.run_var())
        parts = [own]
        if len(reference) > 1:
            parts.append((_var(reference) / len(reference), len(reference) - 1))
        low, high = welch(mean, parts)
        return Estimate(mean, low, high, len(deltas), _std(deltas), approximate)


def _std(values: Sequence[float]) -> float | None:
    v = _var(values)
    return None if math.isnan(v) else math.sqrt(v)


# --- configs over their seeds ----------------------------------------------------------------


def config_summary(
    rows: pd.DataFrame,
    tasks: Sequence[TaskSpec],
    noise: BaselineNoise,
    ensemble: pd.Series | None = None,
    default: Sequence[float] = (),
    max_task_drop: str | float | None = "noise",
) -> pd.DataFrame:
    """One row per config (``config_key``) of ``rows`` (finished trials), best mean Delta_m first.

    Columns: ``config_key``, ``trial_id`` (the config's best run, the one to export),
    ``trial_ids``, ``seeds``, ``family``, ``config``, ``reference``, cost columns (their mean),
    ``delta_m`` (mean) with ``delta_m_std``/``_low``/``_high``/``approximate``, each task's
    metric mean and ``:std``, its term ``term/<task>`` (relative gain %) with ``:low``/``:high``
    and ``contribution/<task>`` (its share of Delta_m, term / T), ``vs_ensemble`` and
    ``vs_default`` with bounds, ``verdict_single``/``_ensemble``/``_default`` (+1/0/-1),
    ``task_drop_ok`` and ``dropped`` (the tasks that break ``max_task_drop``), and
    ``estimates`` (the :class:`Estimate` objects, for callers that format them).
    """
    out = []
    if rows.empty:
        return pd.DataFrame()
    for key, group in rows.groupby("config_key", sort=False):
        group = group.sort_values("delta_m", ascending=False)
        first = group.iloc[0]
        deltas = [float(d) for d in group["delta_m"]]
        estimate = noise.vs_single(deltas)
        record: dict[str, Any] = {
            "config_key": key,
            "trial_id": first["trial_id"],
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
        for column in (*COST_COLUMNS, "warm_start_epochs", "budget_epochs", "epochs_run"):
            if column in group:
                values = group[column].dropna()
                record[column] = (values.iloc[0] if column == "cost_device" else float(values.astype(float).mean())) if len(values) else None
        estimates = {"delta_m": estimate}
        dropped = []
        for spec in tasks:
            column = metric_column(spec)
            values = [float(v) for v in group[column] if not pd.isna(v)] if column in group else []
            record[column] = sum(values) / len(values) if values else math.nan
            record[column + ":std"] = _std(values)
            term = noise.task_vs_single(spec, values)
            estimates[spec.name] = term
            record[f"term/{spec.name}"] = term.mean
            record[f"term/{spec.name}:low"] = term.low
            record[f"term/{spec.name}:high"] = term.high
            record[f"contribution/{spec.name}"] = term.mean / len(tasks)
            if _drops(term, max_task_drop):
                dropped.append(spec.name)
        record["dropped"] = dropped
        record["task_drop_ok"] = not dropped
        if ensemble is not None and not pd.isna(ensemble.get("delta_m")):
            vs = noise.vs_reference(deltas, [float(ensemble["delta_m"])])
            estimates["ensemble"] = vs
            record.update(vs_ensemble=vs.mean, vs_ensemble_low=vs.low, vs_ensemble_high=vs.high,
                          verdict_ensemble=vs.verdict)
        if default:
            vs = noise.vs_reference(deltas, default)
            estimates["default"] = vs
            record.update(vs_default=vs.mean, vs_default_low=vs.low, vs_default_high=vs.high,
                          verdict_default=vs.verdict)
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


def run_terms(row: pd.Series | dict[str, Any], tasks: Iterable[TaskSpec], noise: BaselineNoise) -> dict[str, float]:
    """A single run's term per task (relative gain over ``B_t``, %)."""
    metrics = row_metrics(row, tasks)
    return {spec.name: noise.term(spec, metrics[spec.name]) for spec in tasks}
