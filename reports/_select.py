"""Choosing deployable configs: constraints, Pareto fronts and the best per objective."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mtl_models import TaskSpec, delta_m
from mtl_models import results_table as rt

from ._pareto import pareto_mask
from ._results import confirmed, ensemble_row, finished, full_seeds, metric_column, searched
from ._config_summary import config_summary, delta_column
from ._pick import Pick
from ._stats import BaselineNoise, Reference, ensemble_reference, simultaneous_level

@dataclass(frozen=True)
class Constraints:
    """What a deployable config must satisfy; ``None`` leaves a limit open.

    ``min_metric`` maps a task to the value its primary validation metric (the config's
    mean over its runs) must at least reach: ``>=`` for higher-is-better metrics
    (accuracy), ``<=`` for lower-is-better ones (MAE), so "min" always means "at least
    this good". ``max_task_drop``: how much any task may lose against single-task
    (``noise``: nothing beyond its noise; a number: percent; None: no limit).
    """

    max_params: float | None = None
    max_latency_ms: float | None = None
    latency: str = rt.LATENCY_B1
    min_metric: dict[str, float] = field(default_factory=dict)
    families: tuple[str, ...] = ()
    include_baselines: bool = False
    max_task_drop: str | float | None = "noise"


def select(
    results: pd.DataFrame, tasks: list[TaskSpec], constraints: Constraints, *,
    compositions: pd.DataFrame | None = None, labelled: dict[str, dict[str, int]] | None = None,
) -> pd.DataFrame:
    """The configs that satisfy ``constraints``, best mean Delta_m first: one row per config.

    The configs are those :func:`deploy_pick` ranks (the confirmed ones, over their fresh
    seeds, when the run has a confirmation phase; else the searched ones), with their
    selection intervals (validation: ``delta_m_low``/``_high``, ``seeds``), the verdict's
    figures on the judging split (``judged_split``, ``judged_delta_m``/``_low``/``_high``:
    test when evaluated) and the guardrail (``task_drop_ok``, ``dropped``).
    ``trial_id`` is a config's representative run (nearest its mean), the one ``export``
    writes. ``compositions``/``labelled``: as :func:`deploy_pick`. Adds
    ``pareto_params`` and ``pareto_latency`` (on the front of Delta_m against parameters
    / latency among the qualifying configs) and ``pareto`` (either). Raises
    ``ValueError`` naming the task or family when one is unknown.
    """
    names = [t.name for t in tasks]
    unknown = sorted(set(constraints.min_metric) - set(names))
    if unknown:
        raise ValueError(f"min_metric: unknown task(s) {unknown}; the run's tasks are {names}.")
    if constraints.latency not in rt.LATENCIES:
        raise ValueError(f"latency must be {' or '.join(map(repr, rt.LATENCIES))}, got {constraints.latency!r}.")
    pool = deploy_pick(results, tasks, constraints.max_task_drop, compositions=compositions, labelled=labelled).table
    if constraints.include_baselines:
        ensemble = ensemble_row(results)
        if ensemble is not None:
            pool = pd.concat([pool, _baseline_config(ensemble, tasks)], ignore_index=True)
    if pool.empty:
        return pool
    if constraints.families:
        known = sorted(set(results["family"].dropna()))
        bad = sorted(set(constraints.families) - set(known))
        if bad:
            raise ValueError(f"family: {bad} not in this run; its families are {known}.")
        pool = pool[pool["family"].isin(constraints.families)]
    keep = pd.Series(True, index=pool.index) & pool["task_drop_ok"].astype(bool)
    if constraints.max_params is not None:
        keep &= pool[rt.PARAMS].astype(float) <= constraints.max_params
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
    chosen["pareto_params"] = pareto_mask(chosen, rt.DELTA_M, rt.PARAMS) if len(chosen) else []
    has_latency = constraints.latency in chosen and len(chosen) and chosen[constraints.latency].notna().all()
    chosen["pareto_latency"] = pareto_mask(chosen, "delta_m", constraints.latency) if has_latency else False
    chosen["pareto"] = chosen["pareto_params"] | chosen["pareto_latency"]
    return chosen.sort_values("delta_m", ascending=False)


def _baseline_config(row: pd.Series, tasks: list[TaskSpec]) -> pd.DataFrame:
    """The ensemble baseline as a one-row config table (one composition: no interval)."""
    record = {k: row.get(k) for k in (rt.TRIAL_ID, rt.FAMILY, rt.CONFIG, rt.DELTA_M, *rt.COSTS)}
    record.update(config_key=row.get("config_key"), seeds=1, task_drop_ok=True, dropped=[],
                  delta_m_low=float("nan"), delta_m_high=float("nan"), approximate=False)
    for spec in tasks:
        record[metric_column(spec)] = row.get(metric_column(spec))
    return pd.DataFrame([record])


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
    done = rt.finished_searched(results)
    if done.empty:
        return []
    out = [Objective("best &Delta;<sub>m</sub> (all tasks)", done.loc[done["delta_m"].idxmax()])]
    for spec in tasks:
        column = metric_column(spec)
        if column in done and done[column].notna().any():
            index = done[column].idxmax() if spec.higher_is_better else done[column].idxmin()
            out.append(Objective(f"best {spec.name} {spec.metric_name}", done.loc[index]))
    good = done[done["delta_m"] >= 0]
    for column, label in ((rt.PARAMS, "fewest parameters"), (rt.LATENCY_B1, "fastest at batch 1")):
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


def confirm_shortlist(
    results: pd.DataFrame, objectives: list[str], top_k: int, max_configs: int
) -> list[pd.Series]:
    """The configs the confirmation phase trains again, best Delta_m first, one row each.

    A config's search score is its mean Delta_m over its finished search runs (a repeated
    proposal ran with another seed). The shortlist: the ``top_k`` by that score, the best
    by every objective and, with several objectives, the configs on the Pareto front of
    Delta_m against each cost; at most ``max_configs``. The row given for a config is its
    best search run (config and seeds used).
    """
    done = finished(searched(results))
    if done.empty or top_k <= 0:
        return []
    score = done.groupby("config_key")["delta_m"].mean().sort_values(ascending=False)
    best_runs = done.sort_values("delta_m", ascending=False).drop_duplicates("config_key").set_index("config_key")
    chosen = list(score.index[:top_k])
    per_config = best_runs.assign(delta_m=score)
    for objective in objectives[1:]:  # the costs of a multi-objective search
        if objective in per_config and per_config[objective].notna().all():
            chosen.append(per_config[objective].astype(float).idxmin())
            front = pareto_mask(per_config.reset_index(), "delta_m", objective)
            chosen += list(per_config.index[list(front)])
    order = {key: i for i, key in enumerate(score.index)}
    unique = sorted(set(chosen), key=order.__getitem__)[:max_configs]
    return [best_runs.loc[key].rename(key) for key in unique]


def deploy_pick(
    results: pd.DataFrame, tasks: list[TaskSpec], max_task_drop: str | float | None = "noise", *,
    compositions: pd.DataFrame | None = None, labelled: dict[str, dict[str, int]] | None = None,
) -> Pick:
    """Rank the configs (confirmed ones when the run has them) on validation and pick the deploy
    candidate: the best mean Delta_m among those that drop no task beyond ``max_task_drop``;
    then judge every config on the test split when its runs and the baselines have test
    metrics (else on validation, and the pick says so).

    ``compositions``: the ensemble's compositions from different seed members, one row each
    with ``val/...`` and ``test/...`` metric columns (:func:`reports._evaluate.composition_table`;
    None: the run's one ensemble). ``labelled``: ``{split: {task: labelled examples}}`` for
    the noise floor (the run's label summary). Confirmation rows with a ``reference``
    other than ``default`` (e.g. a tuned single-task run) are compared like the default,
    under their name."""
    labelled = labelled or {}
    noise = BaselineNoise(results, tasks, "val", labelled.get("val"))
    ensemble = ensemble_row(results)
    confirm = confirmed(results)
    default_rows = confirm[confirm["reference"] == "default"] if "reference" in confirm else confirm.iloc[0:0]
    stopped = None
    if len(confirm):
        pool, source = full_seeds(confirm), "confirm"  # a config the race stopped has too few seeds to judge
        raced_out = confirm[~confirm.index.isin(pool.index)]
        stopped = raced_out.sort_values("seed").drop_duplicates("config_key") if len(raced_out) else None
        k = max(int(confirm["config_key"].nunique()), 1)  # the pick is the best of every config that entered the race
    else:
        pool, source = finished(searched(results)), "search"
        k = max(int(pool["config_key"].nunique()), 1) if len(pool) else 1
    level = simultaneous_level(k)
    size = int(ensemble["ensemble_size"]) if ensemble is not None and not pd.isna(ensemble.get("ensemble_size")) else 1
    if compositions is None or compositions.empty:
        compositions = None if ensemble is None else pd.DataFrame([ensemble])

    names = sorted({r for r in confirm["reference"].dropna() if r != "default"}) if "reference" in confirm else []

    def runs_of(rows: pd.DataFrame, on: BaselineNoise, label: str) -> Reference:
        column = delta_column(on.split)
        if column not in rows:
            rows = rows.assign(**{column: [on.row_delta(r) for _, r in rows.iterrows()]})
        rows = rows[rows[column].notna()]
        seeds = tuple(int(s) for s in rows["seed"]) if "seed" in rows and rows["seed"].notna().all() else None
        return Reference(tuple(float(d) for d in rows[column]), seeds, label=label)

    def references(on: BaselineNoise) -> tuple[Reference | None, Reference]:
        ens = None
        if compositions is not None:
            ens = ensemble_reference([on.row_delta(r) for _, r in compositions.iterrows()], on.min_seeds, size)
        return ens, runs_of(default_rows, on, "default")

    def others(on: BaselineNoise) -> dict[str, Reference]:
        """Further references among the confirmation rows (``reference`` other than ``default``)."""
        return {name: runs_of(confirm[confirm["reference"] == name], on, name) for name in names}

    table = config_summary(pool, tasks, noise, *references(noise), max_task_drop, level=level, references=others(noise))
    candidates = table[table["task_drop_ok"]] if len(table) else table
    chosen_key = candidates.iloc[0]["config_key"] if len(candidates) else None
    split, judged_noise, judged = "val", noise, table
    test_noise = BaselineNoise(results, tasks, "test", labelled.get("test"))
    if chosen_key is not None and test_noise.complete and rt.TEST_DELTA_M in results:
        test_table = config_summary(pool, tasks, test_noise, *references(test_noise), max_task_drop, level=level,
                                    references=others(test_noise))
        runs = int(table.loc[table["config_key"] == chosen_key, "seeds"].iloc[0])
        match = test_table[test_table["config_key"] == chosen_key] if len(test_table) else test_table
        if len(match) and int(match["seeds"].iloc[0]) == runs:  # every run of the pick was evaluated on test
            split, judged_noise, judged = "test", test_noise, test_table
    if len(table):
        by_key = judged.set_index("config_key") if len(judged) else pd.DataFrame()
        table["judged"] = [by_key.loc[key, "estimates"] if key in by_key.index else {} for key in table["config_key"]]
        for column in ("delta_m", "delta_m_low", "delta_m_high", "verdict_single"):
            table[f"judged_{column}"] = [by_key.loc[key, column] if key in by_key.index else math.nan
                                         for key in table["config_key"]]
        metric_columns = [c for spec in tasks for c in (metric_column(spec, split), rt.std(metric_column(spec, split)))]
        table["judged_metrics"] = [{c: by_key.loc[key, c] for c in metric_columns if c in by_key} if key in by_key.index
                                   else {} for key in table["config_key"]]
        table["judged_dropped"] = [list(by_key.loc[key, "dropped"]) if key in by_key.index else []
                                   for key in table["config_key"]]
        table["judged_split"] = split
    chosen = table[table["config_key"] == chosen_key].iloc[0] if chosen_key is not None else None
    n_compositions = 0
    if compositions is not None:
        reference = references(noise)[0]
        n_compositions = len(reference.values) if reference is not None and reference.mean_var is not None else 1
    return Pick(source, table, chosen, noise, max_task_drop, len(default_rows) > 0, ensemble is not None,
                split, judged_noise, k, level, n_compositions, stopped)
