"""Per-class gains over single-task of the exported run: the cross-stitch paper found
multi-task learning helps most on classes with little data (Misra et al. 2016, sec. 5,
Fig. 7); whether this run does is a rank-correlation test, not a claim."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtl_models import results_table as rt

from .._run import RunData, class_table, read_exports
from ._base import Block, ReportContext, esc, per_run, register_section


@register_section("per-class", "Per-class gains over single-task", order=80)
def per_class(ctx: ReportContext) -> list[Block]:
    return per_run(ctx, _run_per_class)


def class_gains(run: RunData, trial_id: str) -> pd.DataFrame:
    """Per task and class: the trial's accuracy, the single-task networks' mean accuracy,
    the gain in points and the class's train label count."""
    single_ids = rt.single_task_rows(run.results)[rt.TRIAL_ID].tolist()
    table = class_table(run, [trial_id] + single_ids)
    if table.empty or trial_id not in set(table["trial_id"]):
        return pd.DataFrame()
    model = table[table["trial_id"] == trial_id].set_index(["task", "class"])
    single = table[table["trial_id"].isin(single_ids)].groupby(["task", "class"])["accuracy"].mean()
    out = model[["accuracy", "count", "train_count"]].copy()
    out["single_task_accuracy"] = single.reindex(out.index)
    out["gain_points"] = 100.0 * (out["accuracy"] - out["single_task_accuracy"])
    return out.reset_index()


def per_class_trial(run: RunData) -> tuple[str, str] | None:
    """The trial whose per-class gains the section shows, and why: the run last exported
    from this run directory (``exports.json``, written by ``mtlsearch export``), else the
    deploy candidate's representative run (what ``export`` exports by default), else the
    best-ranked config's; None when there is no ranked config."""
    for entry in reversed(read_exports(run.run_dir)):
        if entry.get("trial_id") in set(run.results["trial_id"]):
            return str(entry["trial_id"]), f"the exported run (to {entry.get('out')})"
    chosen = run.pick.chosen
    if chosen is not None:
        return str(chosen["trial_id"]), "the deploy candidate's run nearest its config's mean: what export exports"
    if len(run.pick.table):
        return (str(run.pick.table.iloc[0]["trial_id"]),
                "no config passes select.max_task_drop, so the best-ranked config's run nearest its mean")
    return None


def rank_correlation(gains: pd.DataFrame) -> list[tuple[str, float, float, int]]:
    """Per task, Spearman's rank correlation of a class's gain with its train label count:
    ``(task, rho, two-sided p, classes)`` from :func:`scipy.stats.spearmanr`; tasks with
    fewer than 3 classes (or constant counts or gains) are left out."""
    from scipy import stats  # here: ~1 s of a CPU, not before `run`'s first trial
    out = []
    for task, g in gains.dropna(subset=["train_count", "gain_points"]).groupby("task", sort=False):
        if len(g) < 3 or g["train_count"].nunique() < 2 or g["gain_points"].nunique() < 2:
            continue
        result = stats.spearmanr(g["train_count"], g["gain_points"])
        out.append((str(task), float(result.statistic), float(result.pvalue), len(g)))
    return out


def _run_per_class(run: RunData) -> list[Block]:
    which = per_class_trial(run)
    if which is None:
        return []
    trial_id, why = which
    gains = class_gains(run, trial_id)
    if gains.empty:
        return []  # no classification task, or no per-class evaluation of this trial
    tasks = list(dict.fromkeys(gains["task"]))
    fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=tasks, shared_yaxes=True)
    for col, task in enumerate(tasks, start=1):
        g = gains[gains["task"] == task].sort_values("train_count")
        labels = [f"{c} (n={int(n)})" for c, n in zip(g["class"], g["train_count"])]
        fig.add_trace(
            go.Bar(
                x=labels, y=g["gain_points"], name=task, showlegend=False,
                marker_color=np.where(g["gain_points"] >= 0, "#2ca02c", "#d62728"),
                customdata=np.stack([g["accuracy"], g["single_task_accuracy"], g["count"]], axis=1),
                hovertemplate="class %{x}<br>gain %{y:+.2f} points of accuracy<br>this model %{customdata[0]:.3f}, "
                "single-task %{customdata[1]:.3f}<br>%{customdata[2]} evaluated<extra></extra>",
            ),
            row=1, col=col,
        )
        fig.update_xaxes(title_text="class (train labels), fewest first", type="category", row=1, col=col)
    fig.update_yaxes(title_text="accuracy gain over single-task (points)", row=1, col=1)
    fig.update_layout(height=420, title=f"Per-class accuracy gain of trial {trial_id} over single-task ({run.eval_split} split)")
    tests = []
    for task, rho, p, n in rank_correlation(gains):
        if p < 0.05:
            finding = ("the rarer the class, the larger the gain (Misra et al. 2016 report this for their "
                       "attributes)" if rho < 0 else "the commoner the class, the larger the gain")
        else:
            finding = "no evidence of a relation between a class's train labels and its gain at this sample size"
        tests.append(f"<li>{esc(task)}: Spearman &rho; = {rho:+.2f}, p = {_p(p)} over {n} classes: {finding}.</li>")
    text = (
        f"<p>Trial <b>{esc(trial_id)}</b> ({esc(why)}) against the mean of the single-task networks, per class on "
        f"the {esc(run.eval_split)} split, classes ordered by their number of train labels. The cross-stitch paper "
        "found multi-task learning helps most on classes with few labels; whether this run shows it is a test of "
        "the rank correlation of a class's gain with its train label count (two-sided, 5 % level; one seed of "
        "the model, so a single run's class noise is in it):</p>"
        + (f"<ul>{''.join(tests)}</ul>" if tests else "<p class='note'>Too few classes to test (3 or more per task needed).</p>")
    )
    return [text, fig]


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.1 else f"{p:.2f}"
