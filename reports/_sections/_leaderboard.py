"""Leaderboard: every trial, sortable, with the baselines pinned on top and why trials stopped."""
from __future__ import annotations

import html
import math
from typing import Any, Iterable

import pandas as pd

from mtl_models import TaskSpec, format_plain, format_rate
from mtl_models import results_table as rt

from .._results import TUNED_SINGLE_TASK, metric_column
from .._run import RunData
from ._base import (
    Block,
    ReportContext,
    esc,
    fmt,
    fmt_count,
    fmt_flops,
    fmt_metric,
    fmt_ms,
    fmt_signed,
    missing,
    register_section,
    structure,
)

_STATUS_ORDER = {"finished": 0, "running": 1, "pending": 2, "pruned": 3, "errored": 4}


_REFERENCE_LABELS = {"default": " <i>(no-search default)</i>",
                     TUNED_SINGLE_TASK: " <i>(tuned single-task reference)</i>"}


@register_section("leaderboard", "Leaderboard", order=20)
def leaderboard(ctx: ReportContext) -> list[Block]:
    multi = ctx.multi
    tasks = {t.name: t for run in ctx.runs for t in run.tasks}.values()
    has_test = any(run.has_test for run in ctx.runs)
    splits = ["val", "test"] if has_test else ["val"]
    columns: list[tuple[str, str]] = [("#", "num")]
    if multi:
        columns.append(("run", "text"))
    columns += [("trial", "text"), ("phase", "text"), ("family", "text"), ("structure", "text"), ("seed", "num"),
                ("&Delta;<sub>m</sub> (val) &plusmn; one run's noise", "num"),
                ("config over its seeds: &Delta;<sub>m</sub> (val) mean &plusmn; std (n)", "num")]
    if has_test:
        columns.append(("&Delta;<sub>m</sub> (test)", "num"))
    for t in tasks:
        arrow = "&uarr;" if t.higher_is_better else "&darr;"
        columns += [(f"{esc(t.name)} {esc(t.metric_name)} {arrow} {s}", "num") for s in splits]
    columns += [
        (rt.PARAMS, "num"), ("FLOPs", "num"), ("lat. b=1 (ms)", "num"), ("lat. b=N (ms)", "num"),
        ("lr", "num"), ("epochs", "num"), ("epochs incl. warm start", "num"), ("status", "text"),
        ("why it stopped", "text"),
    ]
    head = "".join(
        f"<th data-type='{kind}' title='click to sort'>{label}</th>" for label, kind in columns
    )
    pinned, ranked = [], []
    for run in ctx.runs:
        results = run.results
        pinned.append((run, pd.Series(run.single)))
        pinned += [(run, r) for _, r in rt.ensemble_rows(results).iterrows()]
        trials = results[results[rt.PHASE].isin([rt.SEARCH, rt.CONFIRM])].copy()
        trials["_order"] = trials["status"].map(_STATUS_ORDER).fillna(9)
        trials = trials.sort_values(["_order", "delta_m"], ascending=[True, False])
        ranked += [(run, r) for _, r in trials.iterrows()]
    if multi:
        ranked.sort(key=lambda p: (_STATUS_ORDER.get(p[1]["status"], 9), -_num(p[1].get("delta_m"), -math.inf)))
    rows_pinned = [_row(run, row, "", "baseline", multi, tasks, splits, has_test) for run, row in pinned]
    rows_ranked = [
        _row(run, row, str(i + 1), f"status-{row['status']} phase-{row['phase']}", multi, tasks, splits, has_test)
        for i, (run, row) in enumerate(ranked)
    ]
    return [
        "<p>Every trial of the search and of the confirmation phase (each shortlisted config again, with fresh "
        "seeds). Click a column to sort; the baselines stay on top. A run's &Delta;<sub>m</sub> and task metrics "
        "carry the seed noise of one run (&plusmn; the standard deviation of one single-task run's over the "
        "baseline's seeds); a config trained with several seeds also shows its mean and spread over them. Pruned "
        "trials show &Delta;<sub>m</sub> at the epoch the Optuna pruner stopped them; hover over an error for the "
        "whole message.</p>",
        f"<table class='data sortable leaderboard'><thead><tr>{head}</tr></thead>"
        f"<tbody class='pinned'>{''.join(rows_pinned)}</tbody><tbody>{''.join(rows_ranked)}</tbody></table>",
    ]


def _num(value: Any, default: float = math.nan) -> float:
    return default if missing(value) else float(value)


def _cell(text: str, value: Any = None, title: str | None = None) -> str:
    attrs = ""
    if value is not None and not missing(value):
        attrs += f" data-v='{html.escape(str(value), quote=True)}'"
    if title:
        attrs += f" title='{html.escape(title, quote=True)}'"
    return f"<td{attrs}>{text}</td>"


def _config_cell(run: RunData, row: pd.Series) -> str:
    """The row's config over all its finished runs (search and confirmation): mean Delta_m,
    standard deviation and count, when it was trained more than once."""
    key = row.get("config_key")
    results = run.results
    if missing(key) or "config_key" not in results:
        return _cell("")
    runs = results[(results[rt.CONFIG_KEY] == key) & (results[rt.STATUS] == rt.FINISHED)
                   & results[rt.PHASE].isin([rt.SEARCH, rt.CONFIRM])][rt.DELTA_M].dropna()
    if len(runs) < 2:
        return _cell("")
    mean, std = float(runs.mean()), float(runs.std(ddof=1))
    return _cell(f"{fmt_signed(mean)} &plusmn; {format_plain(std, 2)} ({len(runs)})", mean)


def _why(row: pd.Series) -> tuple[str, str | None]:
    status = row.get("status")
    answered = row.get("answered_from")
    if isinstance(answered, str) and status in ("finished", "pruned"):
        return (f"answered without training, from run {esc(answered)} (the same config and seed)"
                + (f"; pruned after epoch {int(row['epochs_run'])}" if status == "pruned" else ""), None)
    if status == "pruned":
        return (
            f"pruned by the Optuna pruner after epoch {int(row['epochs_run'])} of {int(row['epochs'])}"
            f" (&Delta;<sub>m</sub> {fmt_signed(row.get('delta_m'))} then)",
            None,
        )
    if status == "errored":
        error = row.get("error") if isinstance(row.get("error"), str) else "unknown error"
        shown = error if len(error) <= 120 else error[:117] + "..."
        return f"<span class='error'>{esc(shown)}</span>", error
    if status in ("running", "pending"):
        return f"{esc(status)} (epoch {int(row.get('epochs_run') or 0)} so far)", None
    return "", None


def _row(
    run: RunData,
    row: pd.Series,
    rank: str,
    cls: str,
    multi: bool,
    tasks: Iterable[TaskSpec],
    splits: list[str],
    has_test: bool,
) -> str:
    """One table row; sortable cells carry their raw value in ``data-v``."""
    cells = [_cell(rank, rank or None)]
    if multi:
        cells.append(_cell(esc(run.name)))
    delta = row.get("delta_m")
    noise = run.pick.noise
    one_run = math.sqrt(noise.run_var()) if noise.complete and noise.min_seeds > 1 else math.nan
    searched_row = row.get("phase") in ("search", "confirm")
    spread = f" &plusmn; {format_plain(one_run, 2)}" if searched_row and not missing(delta) and not math.isnan(one_run) else ""
    seed = row.get("seed")
    cells += [
        _cell(esc(row.get("trial_id"))),
        _cell(esc(row.get("phase") or "")),
        _cell(esc(row.get("family"))),
        _cell(structure(row) + _REFERENCE_LABELS.get(row.get("reference"), "")),
        _cell("" if missing(seed) else str(int(seed)), None if missing(seed) else int(seed)),
        _cell(fmt_signed(delta) + spread, delta),
        _config_cell(run, row) if searched_row else _cell(""),
    ]
    if has_test:
        cells.append(_cell(fmt_signed(row.get(rt.TEST_DELTA_M)), row.get(rt.TEST_DELTA_M)))
    for t in tasks:
        for split in splits:
            column = metric_column(t, split)
            value = row.get(column)
            std = row.get(rt.std(column))  # the baseline's spread over its seeds
            if missing(std) and searched_row and split == "val" and not missing(value):
                std = noise.metric_std(t)  # one run's seed noise
            cells.append(_cell(fmt_metric(value, t, std), value))
    for column, text in (
        (rt.PARAMS, fmt_count(row.get(rt.PARAMS))),
        (rt.FLOPS, fmt_flops(row.get(rt.FLOPS))),
        (rt.LATENCY_B1, fmt_ms(row.get(rt.LATENCY_B1))),
        (rt.LATENCY_BN, fmt_ms(row.get(rt.LATENCY_BN))),
        ("lr", "&ndash;" if missing(row.get("lr")) else format_rate(row.get("lr"))),
        ("epochs_run", fmt(row.get("epochs_run"))),
        ("budget_epochs", fmt(row.get("budget_epochs"))),
    ):
        cells.append(_cell(text, row.get(column)))
    why, title = _why(row)
    cells += [_cell(esc(row.get("status"))), _cell(why, title=title)]
    return f"<tr class='{cls}'>{''.join(cells)}</tr>"
