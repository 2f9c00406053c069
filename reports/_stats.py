"""Seed noise, sampling noise and 95 % intervals: every number that ranks configs, with the noise it carries.

The single-task baseline is trained with several seeds (``baselines.seeds``), so each
task's seed spread is measured. On task ``t`` a run's *term* is its relative gain over
the baseline mean ``B_t``, ``100 (-1)^{l_t} (M_t - B_t) / B_t`` (percent), and Delta_m is
the mean of the terms over tasks (Maninis et al. 2019).

A config's estimate is the mean over its runs (its seeds) of Delta_m, or of a term,
with an interval for the difference from a reference:

- **Welch** (unpaired): the config's runs on one side, the reference's on the other
  (the baseline mean ``B_t`` is itself an estimate), Welch-Satterthwaite degrees of
  freedom. Single-task networks are trained per task independently, so the baseline's
  Delta_m variance is the sum of its tasks' term variances over ``T^2``.
- **Paired**: where both sides were trained with the same seeds (the confirmed configs
  and the no-search default; the single-task baseline when its seeds are the config's),
  the t interval of the per-seed differences (``scipy.stats.ttest_rel``).

A config trained once has no spread of its own: its run is assumed as noisy as one run
of the single-task networks (one seed of each), and its interval says ``approximate``.

**Noise floor.** Every interval also carries the sampling error of each task's metric on
its labelled examples of the split (``n`` from the run's label summary): binomial for
proportions (accuracy, F1, mAP, mIoU: ``p~(1-p~)/(n+4)``, Agresti-Coull, never 0), the
standard error of a mean absolute error under half-normal errors (``(0.7555 MAE)^2 / n``)
and of a root-mean-square error (``RMSE^2 / 2n``). Both sides of a comparison are
measured on the same examples, so the floor is counted once, in term units. An interval
whose measured variance is zero (tied seeds, no floor) has unknown noise: NaN bounds,
never ``[m, m]``.

**The ensemble** (Misra et al. 2016) is composed from the S single-task seeds as the
S cyclic windows of K consecutive members (members ``i .. i+K-1 mod S``); its value is
the mean over the compositions. Overlapping windows understate one composition's
variance by ``(S-K)/(S-1)`` when each member shifts the ensemble by its own effect / K,
so the mean's variance is ``s^2 (S-1)/(S-K) K/S`` with ``S-1`` degrees of freedom
(unbiased in that additive model). With ``S = K`` only one composition exists: its noise
is taken as one single-task run's (approximate; ``baselines.seeds > K`` measures it).

**Best of k.** The deploy pick is the best of the ``k`` ranked configs, so its Delta_m
intervals (against single-task, the ensemble and the default) are simultaneous:
Bonferroni, each at level ``1 - 0.05 / k``. Per-task intervals (the guardrail, per-task
changes) stay at 95 % per task.

An interval entirely above 0 is a difference beyond the noise; one that contains 0 is
no difference at this budget; the report says which, in words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from mtl_models import TaskSpec, format_delta

from ._results import metric_column, row_metrics, single_task_rows, task_values

LEVEL = 0.95
HALF_NORMAL_SD = math.sqrt(math.pi / 2 - 1)  # sd(|e|) / E|e| for normal errors


def simultaneous_level(k: int, level: float = LEVEL) -> float:
    """Bonferroni: the per-interval level that makes ``k`` intervals hold together at ``level``."""
    return 1.0 - (1.0 - level) / max(int(k), 1)


@dataclass(frozen=True)
class Estimate:
    """A difference from a reference (Delta_m points, or a task's relative gain in %), with
    its interval at ``level``. ``runs``: the config's runs averaged; ``std``: their spread
    (None for one run); ``approximate``: one run (or one reference value), its noise taken
    from the single-task seeds; ``paired``: the interval is over per-seed differences;
    ``split``: the data split the metrics are on."""

    mean: float
    low: float
    high: float
    runs: int
    std: float | None = None
    approximate: bool = False
    level: float = LEVEL
    paired: bool = False
    split: str = "val"

    @property
    def verdict(self) -> int:
        """+1 better beyond the noise, -1 worse beyond it, 0 not distinguishable (or unknown)."""
        if math.isnan(self.low) or math.isnan(self.high):
            return 0
        return 1 if self.low > 0 else (-1 if self.high < 0 else 0)

    @property
    def measured(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def text(self) -> str:
        """``+1.23 % [-0.51, +2.97]`` (``+1.23 % [noise unknown]`` when it is), as every
        Delta_m is written (:func:`mtl_models.format_delta`)."""
        return format_delta(self.mean, self.low, self.high, interval=True)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": _plain(self.mean), "low": _plain(self.low), "high": _plain(self.high), "level": self.level,
            "runs": self.runs, "std": _plain(self.std), "approximate": self.approximate, "paired": self.paired,
            "split": self.split,
        }


def _plain(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def welch(mean: float, parts: Sequence[tuple[float, float]], level: float = LEVEL) -> tuple[float, float]:
    """The ``level`` interval around ``mean`` whose squared standard error is the sum of the
    ``parts`` ``(variance of the mean, degrees of freedom)`` (Welch-Satterthwaite; a part
    with ``math.inf`` dof, such as a noise floor, adds variance but no dof penalty).
    NaN bounds when a part's noise is unmeasured (no degrees of freedom) or when the
    variance is zero (tied seeds and no floor: the noise is unknown, not absent)."""
    from scipy import stats  # here: ~1 s of a CPU, not before `run`'s first trial
    if math.isnan(mean) or any(math.isnan(v) or not df >= 1 for v, df in parts):
        return math.nan, math.nan
    se2 = sum(v for v, _ in parts)
    if math.sqrt(max(se2, 0.0)) <= 1e-9 * max(1.0, abs(mean)):  # zero up to rounding (tied seeds)
        return math.nan, math.nan
    denominator = sum(v**2 / df for v, df in parts if v > 0 and math.isfinite(df))
    q = 0.5 + level / 2
    quantile = float(stats.norm.ppf(q)) if denominator == 0 else float(stats.t.ppf(q, se2**2 / denominator))
    half = quantile * math.sqrt(se2)
    return mean - half, mean + half


def paired_interval(
    differences: Sequence[float], extra: Sequence[tuple[float, float]] = (), level: float = LEVEL
) -> tuple[float, float, float]:
    """Mean and ``level`` interval of per-seed ``differences`` (the paired t interval of
    ``scipy.stats.ttest_rel``), widened by the ``extra`` parts (a noise floor)."""
    n = len(differences)
    if n < 2:
        return math.nan, math.nan, math.nan
    mean = sum(differences) / n
    return (mean, *welch(mean, [(_var(differences) / n, n - 1), *extra], level))


def metric_floor_var(metric: str, value: float, n: int) -> float:
    """The variance of ``metric`` measured as ``value`` on ``n`` labelled examples: the
    sampling error of the examples (module docstring). NaN when ``n`` is unknown."""
    if not n or n <= 0 or value is None or not math.isfinite(value):
        return math.nan
    if metric == "mae":
        return (HALF_NORMAL_SD * value) ** 2 / n
    if metric == "rmse":
        return value**2 / (2 * n)
    p = min(max(value, 0.0), 1.0)  # a proportion: accuracy, F1, mAP, mIoU, pixel accuracy
    shrunk = (p * n + 2) / (n + 4)  # Agresti-Coull: never 0 at p = 0 or 1
    return shrunk * (1 - shrunk) / (n + 4)


def _var(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return sum((v - mean) ** 2 for v in values) / (n - 1)


@dataclass(frozen=True)
class Reference:
    """What a config is compared with besides single-task: another config's Delta_m runs
    (the no-search default, ``seeds`` per run, so runs of the same seed pair) or the
    ensemble's compositions (``mean_var``/``dof``: its mean's variance, from
    :func:`ensemble_reference`)."""

    values: tuple[float, ...]
    seeds: tuple[int, ...] | None = None
    mean_var: float | None = None
    dof: float | None = None
    label: str = ""


def ensemble_reference(values: Sequence[float], seeds: int, size: int) -> Reference:
    """The ensemble over its ``seeds`` cyclic compositions of ``size`` members (module
    docstring): the mean's variance ``s^2 (S-1)/(S-K) K/S`` with ``S-1`` dof. One
    composition (or not all S of them): its noise unknown here (borrowed downstream)."""
    values = tuple(float(v) for v in values if not math.isnan(v))
    if len(values) < 2 or seeds <= size or len(values) != seeds:
        return Reference(values[:1], label="ensemble")
    var_one = _var(values) * (seeds - 1) / (seeds - size)
    return Reference(values, mean_var=var_one * size / seeds, dof=seeds - 1, label="ensemble")


def cyclic_compositions(seeds: int, size: int) -> list[list[int]]:
    """The member indices of the ensemble's compositions: ``S`` cyclic windows of ``K``
    (one, ``0 .. K-1``, when ``S <= K``); composition 0 is the ensemble the run composed."""
    if seeds <= size:
        return [list(range(min(seeds, size)))]
    return [[(i + j) % seeds for j in range(size)] for i in range(seeds)]


class BaselineNoise:
    """The single-task baseline's seed noise on ``split``: per task its mean ``B_t``, the
    variance of one seed's term, the number of seeds and each seed's value (from the
    results table's finished single-task trials), and the noise floor of the task's metric
    on its ``labelled`` examples of the split (``{task: n}``; unknown: no floor)."""

    def __init__(
        self, results: pd.DataFrame, tasks: Sequence[TaskSpec], split: str = "val",
        labelled: dict[str, int] | None = None,
    ) -> None:
        self.tasks = list(tasks)
        self.split = split
        self.mean: dict[str, float] = {}
        self.var: dict[str, float] = {}
        self.seeds: dict[str, int] = {}
        self.by_seed: dict[str, dict[int, float]] = {}
        self.floor: dict[str, float] = {}
        self.labelled = dict(labelled or {})
        for spec in self.tasks:
            values = task_values(results, spec, split)
            if not values:
                continue
            self.mean[spec.name] = sum(values) / len(values)
            self.seeds[spec.name] = len(values)
            self.var[spec.name] = _var([self.term(spec, v) for v in values])
            rows = single_task_rows(results, spec.name)
            column = metric_column(spec, split)
            if "seed" in rows and column in rows:
                pairs = [(s, v) for s, v in zip(rows["seed"], rows[column]) if not pd.isna(s) and not pd.isna(v)]
                by_seed = {int(s): float(v) for s, v in pairs}
                if len(by_seed) == len(pairs):
                    self.by_seed[spec.name] = by_seed
            floor = metric_floor_var(spec.metric_name, self.mean[spec.name], self.labelled.get(spec.name, 0))
            base = self.mean[spec.name]
            self.floor[spec.name] = floor * (100.0 / base) ** 2 if not math.isnan(floor) and base else 0.0

    @property
    def complete(self) -> bool:
        return len(self.mean) == len(self.tasks)

    @property
    def min_seeds(self) -> int:
        return min(self.seeds.values()) if self.seeds else 0

    @property
    def has_floor(self) -> bool:
        return any(v > 0 for v in self.floor.values())

    def term(self, spec: TaskSpec, value: float) -> float:
        """A value's relative gain over ``B_t`` in percent, signed so that positive is better."""
        base = self.mean.get(spec.name, math.nan)
        if value is None or not (math.isfinite(value) and math.isfinite(base)) or base == 0:
            return math.nan
        sign = 1.0 if spec.higher_is_better else -1.0
        return 100.0 * sign * (value - base) / base

    def row_delta(self, row: pd.Series | dict[str, Any]) -> float:
        """Delta_m of a row's metrics on this split against ``B_t`` (NaN when a task is missing)."""
        terms = [self.term(spec, row_metrics(row, [spec], self.split)[spec.name]) for spec in self.tasks]
        return sum(terms) / len(terms) if terms and not any(math.isnan(t) for t in terms) else math.nan

    def run_var(self) -> float:
        """The variance of one run's Delta_m (one seed of every single-task network)."""
        t = len(self.tasks)
        return sum(self.var[s.name] for s in self.tasks) / t**2 if self.complete else math.nan

    def mean_parts(self) -> list[tuple[float, float]]:
        """The baseline mean's share of a Delta_m difference's variance, per task, with its dof."""
        t = len(self.tasks)
        return [(self.var[s.name] / (t**2 * self.seeds[s.name]), self.seeds[s.name] - 1) for s in self.tasks]

    def floor_parts(self) -> list[tuple[float, float]]:
        """The noise floor of a Delta_m difference (every task's, once): no dof penalty."""
        total = sum(self.floor.get(s.name, 0.0) for s in self.tasks) / len(self.tasks) ** 2
        return [(total, math.inf)] if total > 0 else []

    def task_floor_parts(self, spec: TaskSpec) -> list[tuple[float, float]]:
        floor = self.floor.get(spec.name, 0.0)
        return [(floor, math.inf)] if floor > 0 else []

    def metric_std(self, spec: TaskSpec) -> float | None:
        """The standard deviation of one single-task run's metric on ``spec`` over the seeds
        (None with fewer than two)."""
        if self.seeds.get(spec.name, 0) < 2:
            return None
        return math.sqrt(self.var[spec.name]) * abs(self.mean[spec.name]) / 100.0

    def _pairs_with_baseline(self, seeds: Sequence[int] | None, specs: Sequence[TaskSpec]) -> bool:
        """Whether a config's runs have exactly the single-task seeds of every task in ``specs``."""
        if not seeds or len(seeds) < 2 or len(set(seeds)) != len(seeds):
            return False
        return all(set(self.by_seed.get(s.name, {})) == set(seeds) and self.seeds.get(s.name) == len(seeds)
                   for s in specs)

    def vs_single(self, deltas: Sequence[float], seeds: Sequence[int] | None = None, level: float = LEVEL) -> Estimate:
        """A config's Delta_m runs against the single-task baseline (mean and interval);
        paired when the runs' ``seeds`` are the baseline's."""
        keep = [i for i, d in enumerate(deltas) if not math.isnan(d)]
        seeds = [seeds[i] for i in keep] if seeds is not None and len(seeds) == len(deltas) else None
        deltas = [deltas[i] for i in keep]
        if not deltas or not self.complete:
            return Estimate(math.nan, math.nan, math.nan, len(deltas), split=self.split, level=level)
        if self._pairs_with_baseline(seeds, self.tasks):
            base = {s: sum(self.term(t, self.by_seed[t.name][s]) for t in self.tasks) / len(self.tasks) for s in seeds}
            mean, low, high = paired_interval([d - base[s] for d, s in zip(deltas, seeds)], self.floor_parts(), level)
            return Estimate(mean, low, high, len(deltas), _std(deltas), False, level, True, self.split)
        mean = sum(deltas) / len(deltas)
        own, approximate = self._own(deltas, self.run_var())
        low, high = welch(mean, [own, *self.mean_parts(), *self.floor_parts()], level)
        return Estimate(mean, low, high, len(deltas), _std(deltas), approximate, level, False, self.split)

    def task_vs_single(
        self, spec: TaskSpec, values: Sequence[float], seeds: Sequence[int] | None = None, level: float = LEVEL
    ) -> Estimate:
        """A config's runs of task ``spec``'s metric as terms (relative gain, %) against single-task;
        paired when the runs' ``seeds`` are the task's single-task seeds."""
        terms = [self.term(spec, v) for v in values]
        keep = [i for i, x in enumerate(terms) if not math.isnan(x)]
        terms = [terms[i] for i in keep]
        seeds = [seeds[i] for i in keep] if seeds is not None and len(seeds) == len(values) else None
        if not terms or spec.name not in self.mean:
            return Estimate(math.nan, math.nan, math.nan, len(terms), split=self.split, level=level)
        if self._pairs_with_baseline(seeds, [spec]):
            base = self.by_seed[spec.name]
            mean, low, high = paired_interval(
                [x - self.term(spec, base[s]) for x, s in zip(terms, seeds)], self.task_floor_parts(spec), level)
            return Estimate(mean, low, high, len(terms), _std(terms), False, level, True, self.split)
        mean = sum(terms) / len(terms)
        seeds_n = self.seeds[spec.name]
        own, approximate = self._own(terms, self.var[spec.name])
        low, high = welch(mean, [own, (self.var[spec.name] / seeds_n, seeds_n - 1), *self.task_floor_parts(spec)], level)
        return Estimate(mean, low, high, len(terms), _std(terms), approximate, level, False, self.split)

    def _own(self, runs: Sequence[float], one_run_var: float) -> tuple[tuple[float, float], bool]:
        """The config side of a difference: its mean's variance and dof; one run borrows the baseline's."""
        if len(runs) > 1:
            return (_var(runs) / len(runs), len(runs) - 1), False
        return (one_run_var, self.min_seeds - 1), True

    def vs_reference(
        self, deltas: Sequence[float], reference: Reference | Sequence[float], seeds: Sequence[int] | None = None,
        level: float = LEVEL,
    ) -> Estimate:
        """A config's Delta_m runs against a :class:`Reference` (the ensemble's compositions,
        the no-search default's runs): paired over seeds when both sides have the same seeds,
        else Welch; a reference of one value borrows one single-task run's noise."""
        if not isinstance(reference, Reference):
            reference = Reference(tuple(float(r) for r in reference))
        pairs = [(d, None if seeds is None or len(seeds) != len(deltas) else seeds[i])
                 for i, d in enumerate(deltas) if not math.isnan(d)]
        deltas = [d for d, _ in pairs]
        seeds = [s for _, s in pairs] if all(s is not None for _, s in pairs) else None
        ref = [(r, None if reference.seeds is None else reference.seeds[i])
               for i, r in enumerate(reference.values) if not math.isnan(r)]
        values = [r for r, _ in ref]
        if not deltas or not values:
            return Estimate(math.nan, math.nan, math.nan, len(deltas), split=self.split, level=level)
        ref_seeds = [s for _, s in ref] if reference.seeds is not None else None
        if (seeds and ref_seeds and len(seeds) >= 2 and len(set(seeds)) == len(seeds)
                and sorted(seeds) == sorted(ref_seeds)):
            by_seed = dict(zip(ref_seeds, values))
            mean, low, high = paired_interval([d - by_seed[s] for d, s in zip(deltas, seeds)], self.floor_parts(), level)
            return Estimate(mean, low, high, len(deltas), _std(deltas), False, level, True, self.split)
        mean = sum(deltas) / len(deltas) - sum(values) / len(values)
        own, approximate = self._own(deltas, self.run_var())
        parts = [own, *self.floor_parts()]
        if reference.mean_var is not None:
            parts.append((reference.mean_var, reference.dof or 1))
        elif len(values) > 1:
            parts.append((_var(values) / len(values), len(values) - 1))
        else:
            parts.append((self.run_var(), self.min_seeds - 1))
            approximate = True
        low, high = welch(mean, parts, level)
        return Estimate(mean, low, high, len(deltas), _std(deltas), approximate, level, False, self.split)


def _std(values: Sequence[float]) -> float | None:
    v = _var(values)
    return None if math.isnan(v) else math.sqrt(v)
