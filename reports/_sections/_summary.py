"""Summary: what to deploy, in words and numbers, with the noise every number carries.

First the verdict (whether the pick beats single-task, the ensemble and the no-search
default beyond the noise, or that nothing does at this budget: chosen on validation,
judged on test when the run has a test split), then the ranked configs (confirmed over
fresh seeds when the run has a confirmation phase) with their selection figure
(validation), the verdict's intervals on the judging split and each task's contribution
to Delta_m, so that one task dominating a gain,
or one task paying for it, shows at a glance. Then the best single runs of the search
per objective, with the seed noise of one run, and the baselines.
"""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from mtl_models import TaskSpec, format_delta, format_estimate
from mtl_models import results_table as rt

from .._results import metric_column, searched
from .._run import RunData
from .._select import best_per_objective, delta_vs
from .._stats import Estimate
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
    note,
    per_run,
    register_section,
    short_label,
    structure,
    worded_label,
)

TASK_COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d"]


@register_section("summary", "Summary: what to deploy", order=10)
def summary(ctx: ReportContext) -> list[Block]:
    return per_run(ctx, _run_summary)


def _status_line(run: RunData) -> str:
    trials = searched(run.results)
    counts = trials["status"].value_counts().to_dict()
    text = (
        f"<p><b>{len(trials)}</b> searched trials: "
        + ", ".join(f"{n} {esc(s)}" for s, n in sorted(counts.items()))
        + "."
    )
    confirm = rt.phase_rows(run.results, rt.CONFIRM)
    if len(confirm):
        text += f" <b>{len(confirm)}</b> confirmation trials ({len(rt.confirmed(confirm))} finished)."
    active = int(run.results[rt.STATUS].isin(rt.ACTIVE).sum())
    if active:
        text += f" <b class='live'>The run is still running ({active} trials not done): this report is a snapshot.</b>"
    return text + "</p>"


def _run_summary(run: RunData) -> list[Block]:
    blocks: list[Block] = [_status_line(run)]
    pick = run.pick
    if pick.table.empty:
        return blocks + [note("No searched trial has finished yet; the leaderboard below shows what has run.")]
    sentences = pick.sentences(worded_label)
    blocks.append(
        "<div class='verdict'>" + "".join(f"<p>{esc(s)}</p>" for s in sentences) + "</div>"
    )
    blocks.append(_ranking(run))
    blocks.append(GLOSSARY)
    blocks.append(_contributions(run))
    blocks += _single_runs(run)
    return blocks


# The terms the summary uses, explained once under it.
GLOSSARY = (
    "<details class='glossary' open><summary>Glossary</summary><dl>"
    "<dt>&Delta;<sub>m</sub></dt><dd>The mean over tasks of each task's relative change against the single-task "
    "baseline, in percent, signed so that positive is better (Maninis et al. 2019): "
    "&Delta;<sub>m</sub> = (100 / T) &sum;<sub>t</sub> (&minus;1)<sup>l<sub>t</sub></sup> (M<sub>t</sub> &minus; "
    "B<sub>t</sub>) / B<sub>t</sub>, l<sub>t</sub> = 1 where lower is better. Written +1.90 % [&minus;3.92, +7.71]: "
    "the mean, then its interval.</dd>"
    "<dt>term</dt><dd>One task's part of &Delta;<sub>m</sub>: its relative change against single-task in percent "
    "(signed so that higher is better); &Delta;<sub>m</sub> is the mean of the terms, so a task contributes its "
    "term / T.</dd>"
    "<dt>[low, high]</dt><dd>The interval of a difference over seeds (95 %, or Bonferroni-corrected over the k "
    "ranked configs for &Delta;<sub>m</sub>); green: better beyond the noise, red: worse beyond it, grey: not "
    "distinguishable. [noise unknown]: the baseline has one seed, so no interval can be given.</dd>"
    "<dt>&asymp;</dt><dd>One run only: its noise is taken to be that of one single-task run, not measured.</dd>"
    "<dt>k</dt><dd>In a structure, <code>hard_split k=2</code>: the split point; the first k backbone stages are "
    "shared by all tasks, every later stage is per task (k=0 shares nothing: the single-task networks). In the "
    "notes, k is the number of ranked configs the pick is the best of.</dd>"
    "<dt>w</dt><dd><code>[w 0.33/0.67]</code>: the static loss weights of the tasks, in the tasks' order "
    "(total loss = &sum;<sub>t</sub> w<sub>t</sub> L<sub>t</sub>); absent when the weights are equal.</dd>"
    "<dt>a=(same, diff), lr x</dt><dd>A cross-stitch unit's initial mixing weights (Misra et al. 2016) and its "
    "learning-rate multiplier.</dd>"
    "<dt>epochs (with warm start)</dt><dd>The epochs a config trained, counting the single-task epochs its columns "
    "started from when it starts from the single-task networks (column_init: single_task): the budget it is "
    "compared at.</dd>"
    "<dt>no-search default</dt><dd>Every stage shared, equal loss weights: what a user gets without a search.</dd>"
    "<dt>deploy candidate</dt><dd>The best config by validation &Delta;<sub>m</sub> that loses no task beyond "
    "select.max_task_drop; <code>mtlsearch export</code> exports its run nearest the config's mean.</dd>"
    "</dl></details>"
)


def _interval(est: Estimate | None) -> str:
    """A cell: the mean, its interval beneath, coloured by the verdict."""
    if est is None or math.isnan(est.mean):
        return "&ndash;"
    cls = {1: "better", 0: "same", -1: "worse"}[est.verdict]
    mean, _, bounds = format_estimate(est, approximate=False).partition(" [")
    approx = " &asymp;" if est.approximate else ""
    return f"<span class='{cls}'>{esc(mean)}</span><br><span class='ci'>[{esc(bounds)}{approx}</span>"


def _ranking(run: RunData) -> str:
    """The ranked configs: the selection figure (validation), then the verdict's figures on the
    judging split (test when evaluated) with their intervals, per-task terms and the guardrail."""
    pick, tasks = run.pick, run.tasks
    table = pick.table
    split = "test" if pick.split == "test" else "validation"
    title = (
        "Confirmed configs (fresh seeds; the search's own run is left out: it was chosen for scoring well)"
        if pick.source == "confirm" else "Searched configs (one run each unless the search repeated a proposal)"
    )
    judged_head = f"&Delta;<sub>m</sub> vs single-task ({split}, the verdict)"
    head = (
        "<tr><th>#</th><th>config</th><th>seeds</th>"
        + ("<th>&Delta;<sub>m</sub> selection (validation)</th>" if pick.split == "test" else "")
        + f"<th>{judged_head}</th>"
        + (f"<th>vs ensemble ({split})</th>" if pick.has_ensemble else "")
        + (f"<th>vs no-search default ({split})</th>" if pick.has_default else "")
        + "".join(
            f"<th>{esc(t.name)} {esc(t.metric_name)} {'&uarr;' if t.higher_is_better else '&darr;'} ({split})<br>"
            f"<span class='ci'>term, % (contribution to &Delta;<sub>m</sub>)</span></th>"
            for t in tasks
        )
        + "<th>params</th><th>epochs (with warm start)</th><th>deployable? (validation)</th></tr>"
    )
    rows = []
    limit = 12
    for i, (_, row) in enumerate(table.head(limit).iterrows()):
        est = row["estimates"]
        judged = row.get("judged") or est
        chosen = pick.chosen is not None and row["config_key"] == pick.chosen["config_key"]
        label = structure(row) + (" <i>(no-search default)</i>" if row.get("reference") == "default" else "")
        cells = [f"<td>{i + 1}</td><td>{label}</td><td>{int(row['seeds'])}</td>"]
        if pick.split == "test":
            cells.append(f"<td>{_interval(est['delta_m'])}</td>")
        cells.append(f"<td>{_interval(judged.get('delta_m'))}</td>")
        if pick.has_ensemble:
            cells.append(f"<td>{_interval(judged.get('ensemble'))}</td>")
        if pick.has_default:
            cells.append(f"<td>{'&ndash;' if row.get('reference') == 'default' else _interval(judged.get('default'))}</td>")
        for spec in tasks:
            cells.append(f"<td>{_task_cell(row, spec, judged, pick.split)}</td>")
        budget = row.get("budget_epochs")
        warm = row.get("warm_start_epochs") or 0
        cells.append(f"<td>{fmt_count(row.get(rt.PARAMS))}</td>")
        cells.append(f"<td>{fmt(budget, 3)}{' (incl. ' + fmt(warm, 3) + ' single-task)' if warm else ''}</td>")
        ok = "<b>deploy candidate</b>" if chosen else ("yes" if row["task_drop_ok"] else
                                                        f"<span class='worse'>no: {esc(', '.join(row['dropped']))} drop</span>")
        cells.append(f"<td>{ok}</td>")
        rows.append(f"<tr class='{'best' if chosen else ''}'>{''.join(cells)}</tr>")
    more = f"<p class='note'>{len(table) - limit} more in the leaderboard.</p>" if len(table) > limit else ""
    where = (
        "The configs are ranked and the pick chosen on the validation split (the selection figure); the verdict's "
        "figures are on the test split, which the choice never saw. "
        if pick.split == "test" else
        "There is no evaluated test split: ranking, pick and verdict are all on the validation split, so the "
        "pick's figures are optimistic (the best of k on the same examples). "
    )
    return (
        f"<h3>{esc(title)}</h3><table class='data summary'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>{more}"
        + note(
            where
            + "Each cell gives the mean over the config's runs and, beneath, the interval of its difference: paired "
            "over seeds where both sides share them, else Welch (the config's runs against the single-task seeds), "
            "widened by each task's sampling noise on its labelled examples; &Delta;<sub>m</sub> intervals hold "
            f"together for the best of the k = {pick.k} configs (Bonferroni, each at {100 * pick.level:.4g} %), "
            "per-task ones are 95 %. Green is better beyond the noise, red worse beyond it, grey not "
            "distinguishable. &asymp; marks a single run, whose noise is taken to be that of one single-task run. "
            "A task's term is its relative change against single-task in percent "
            "(signed so that higher is better); &Delta;<sub>m</sub> is the mean of the terms, so each task "
            f"contributes its term / {len(tasks)}. A config is deployable when no task "
            + ("drops beyond its noise on validation (select.max_task_drop: noise)." if run.max_task_drop == "noise" else
               f"drops more than {esc(run.max_task_drop)} % on validation (select.max_task_drop)." if run.max_task_drop is not None
               else "&hellip; (select.max_task_drop: null, no limit).")
        )
    )


def _task_cell(row: pd.Series, spec: TaskSpec, judged: dict[str, Estimate], split: str) -> str:
    """A task's metric mean (&plusmn; its spread over seeds) and its term's interval, on ``split``."""
    column = metric_column(spec, split)
    metrics = row.get("judged_metrics") if isinstance(row.get("judged_metrics"), dict) else row
    value, std = metrics.get(column), metrics.get(rt.std(column))
    term: Estimate | None = judged.get(spec.name)
    tasks = [k for k in judged if k not in ("delta_m", "ensemble", "default")]
    contribution = term.mean / len(tasks) if term is not None and not math.isnan(term.mean) else None
    return (
        f"{fmt_metric(value, spec, std)}<br>{_interval(term)}"
        + (f" <span class='ci'>({esc(format_delta(contribution))})</span>" if contribution is not None else "")
    )


def _contributions(run: RunData) -> go.Figure:
    """Each task's contribution to Delta_m, stacked per config: where a gain comes from."""
    table = run.pick.table.head(12)
    labels = [f"{i + 1}. {short_label(r)}" for i, (_, r) in enumerate(table.iterrows())]
    fig = go.Figure()
    for i, spec in enumerate(run.tasks):
        fig.add_trace(
            go.Bar(
                y=labels, x=table[f"contribution/{spec.name}"], orientation="h", name=spec.name,
                marker_color=TASK_COLORS[i % len(TASK_COLORS)],
                hovertemplate=f"{spec.name}: %{{x:+.2f}} % of Δm<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            y=labels, x=table["delta_m"], mode="markers", name="Δm (mean)", marker={"color": "black", "symbol": "diamond"},
            error_x={"type": "data", "symmetric": False, "array": table["delta_m_high"] - table["delta_m"],
                     "arrayminus": table["delta_m"] - table["delta_m_low"]},
            hovertemplate="Δm %{x:+.2f} %<extra></extra>",
        )
    )
    fig.update_layout(
        barmode="relative", height=120 + 34 * len(table), title="Each task's contribution to Δm (%, validation: the selection split), with Δm's interval",
        yaxis={"autorange": "reversed"}, xaxis_title="Δm, % (each task's term / number of tasks)", legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _single_runs(run: RunData) -> list[Block]:
    """The search's best single runs per objective, and the baselines, with one run's seed noise."""
    tasks, results = run.tasks, run.results
    objectives = best_per_objective(results, tasks)
    if not objectives:
        return []
    noise = run.pick.noise
    single = run.single
    ensemble_rows = rt.ensemble_rows(results)
    ensemble = ensemble_rows.iloc[0] if len(ensemble_rows) else None
    test = run.has_test
    splits = ["val", "test"] if test else ["val"]
    head = "<tr><th>objective</th><th>trial</th><th>structure</th><th>seed</th>"
    for split in splits:
        head += f"<th>&Delta;<sub>m</sub> vs single ({split})</th><th>&Delta;<sub>m</sub> vs ensemble ({split})</th>"
    for spec in tasks:
        for split in splits:
            arrow = "&uarr;" if spec.higher_is_better else "&darr;"
            head += f"<th>{esc(spec.name)} {esc(spec.metric_name)} {arrow} ({split})</th>"
    head += "<th>params</th><th>FLOPs / image</th><th>latency b=1 (ms)</th><th>latency b=N (ms)</th></tr>"
    body = []
    reference_rows = [("single-task baseline", pd.Series(single))]
    if ensemble is not None:
        reference_rows.append(("ensemble baseline", ensemble))
    for label, row, cls in [(label, row, "") for label, row in merge_objectives(objectives)] + [
            (l, r, "baseline") for l, r in reference_rows]:
        seed = row.get("seed")
        cells = (
            f"<td>{label}</td><td>{esc(row.get('trial_id'))}</td><td>{structure(row)}</td>"
            f"<td>{'' if seed is None or pd.isna(seed) else int(seed)}</td>"
        )
        for split in splits:
            own = row.get(rt.delta_column(split))
            searched_run = split == "val" and cls == "" and not pd.isna(own)
            cells += f"<td>{_interval(noise.vs_single([float(own)])) if searched_run else fmt_signed(own)}</td>"
            cells += f"<td>{fmt_signed(delta_vs(row, ensemble, tasks, split)) if ensemble is not None else '&ndash;'}</td>"
        for spec in tasks:
            for split in splits:
                column = metric_column(spec, split)
                std = row.get(rt.std(column))  # the baseline's spread over its seeds
                if (std is None or pd.isna(std)) and cls == "" and split == "val":
                    std = noise.metric_std(spec)  # a search run: one run's seed noise
                cells += f"<td>{fmt_metric(row.get(column), spec, std)}</td>"
        cells += (
            f"<td>{fmt_count(row.get(rt.PARAMS))}</td><td>{fmt_flops(row.get(rt.FLOPS))}</td>"
            f"<td>{fmt_ms(row.get(rt.LATENCY_B1))}</td><td>{fmt_ms(row.get(rt.LATENCY_BN))}</td>"
        )
        body.append(f"<tr class='{cls}'>{cells}</tr>")
    return [
        "<h3>The search's best single runs, by objective</h3>"
        "<p class='note'>A run that is best by several objectives is one row naming all of them.</p>",
        f"<table class='data summary'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>",
        _explain(run, test),
    ]


def merge_objectives(objectives: list) -> list[tuple[str, pd.Series]]:
    """One row per trial, in the order first seen, naming every objective it is best by."""
    merged: dict[str, tuple[list[str], pd.Series]] = {}
    for objective in objectives:
        key = str(objective.row.get("trial_id"))
        merged.setdefault(key, ([], objective.row))[0].append(objective.label)
    return [("; ".join(labels), row) for labels, row in merged.values()]


def _explain(run: RunData, test: bool) -> str:
    batch = run.results[rt.LATENCY_BATCH].dropna() if rt.LATENCY_BATCH in run.results else pd.Series(dtype=float)
    devices = run.results[rt.COST_DEVICE].dropna().unique().tolist() if rt.COST_DEVICE in run.results else []
    parts = [
        "Each row is one run (one seed): its interval (&asymp;) takes its noise to be that of one single-task "
        "run, so a best single run is also the luckiest of many draws; the confirmed configs above are the "
        "numbers to trust. &Delta;<sub>m</sub> is the mean relative gain over the baseline across tasks, signed "
        "so that positive is better (Maninis et al. 2019); the single-task baseline is the mean of its seeds "
        "(&plusmn; their standard deviation).",
    ]
    if test:
        parts.append(
            f"The search chose on the validation split only. The test split was evaluated afterwards, only for "
            f"the shortlisted configs ({', '.join(esc(t) for t in run.shortlist)}) and the baselines; other "
            "trials have no test numbers."
        )
    else:
        parts.append("No test-split numbers: the data has no test split or the run's data could not be loaded.")
    if len(batch):
        parts.append(
            f"Latency: median of timed eval-mode forward passes after warm-up, at batch 1 and at the training "
            f"batch N={int(batch.iloc[0])}, on {', '.join(esc(d) for d in devices) or 'the trial device'}; "
            "FLOPs count a multiply-add as 2 (torch.utils.flop_counter)."
        )
    return note(" ".join(parts + [esc(n) for n in run.notes]))
