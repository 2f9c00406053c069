"""Per-class gains over single-task: the cross-stitch paper found multi-task learning
helps most on classes with little data (Misra et al. 2016, sec. 5, Fig. 7)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .._run import RunData, class_table
from .._select import best_per_objective
from ._base import Block, ReportContext, esc, note, register_section, per_run


@register_section("per-class", "Per-class gains over single-task", order=80)
def per_class(ctx: ReportContext) -> list[Block]:
    return per_run(ctx, _run_per_class)


def class_gains(run: RunData, trial_id: str) -> pd.DataFrame:
    """Per task and class: the trial's accuracy, the single-task networks' mean accuracy,
    the gain in points and the class's train label count."""
    single_ids = run.results.loc[
        (run.results["family"] == "single_task") & (run.results["status"] == "finished"), "trial_id"
    ].tolist()
    table = class_table(run, [trial_id] + single_ids)
    if table.empty or trial_id not in set(table["trial_id"]):
        return pd.DataFrame()
    model = table[table["trial_id"] == trial_id].set_index(["task", "class"])
    single = table[table["trial_id"].isin(single_ids)].groupby(["task", "class"])["accuracy"].mean()
    out = model[["accuracy", "count", "train_count"]].copy()
    out["single_task_accuracy"] = single.reindex(out.index)
    out["gain_points"] = 100.0 * (out["accuracy"] - out["single_task_accuracy"])
    return out.reset_index()


def _run_per_class(run: RunData) -> list[Block]:
    objectives = best_per_objective(run.results, run.tasks)
    if not objectives:
        return [note("No finished searched trial yet.")]
    best = objectives[0].row
    gains = class_gains(run, best["trial_id"])
    if gains.empty:
        return [note("No per-class evaluation for this run (no classification task, or its data could not be loaded).")]
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
                hovertemplate="class %{x}<br>gain %{y:+.1f} points<br>this config %{customdata[0]:.3f}, "
                "single-task %{customdata[1]:.3f}<br>%{customdata[2]} evaluated<extra></extra>",
            ),
            row=1, col=col,
        )
        fig.update_xaxes(title_text="class (train labels), fewest first", type="category", row=1, col=col)
    fig.update_yaxes(title_text="accuracy gain over single-task (points)", row=1, col=1)
    fig.update_layout(height=420, title=f"Per-class accuracy gain of trial {best['trial_id']} over single-task ({run.eval_split} split)")
    corr = gains[["train_count", "gain_points"]].dropna()
    rho = corr["train_count"].corr(corr["gain_points"], method="spearman") if len(corr) > 2 else float("nan")
    text = (
        f"<p>Trial <b>{esc(best['trial_id'])}</b> (best &Delta;<sub>m</sub>) against the mean of the single-task "
        f"networks, per class on the {esc(run.eval_split)} split, classes ordered by their number of train labels. "
        + (f"Spearman correlation of gain with train label count: <b>{rho:+.2f}</b> "
           + ("(negative: the rarer the class, the larger the gain, as the paper found)." if rho < 0 else
              "(not negative: here rarer classes did not gain more, unlike the paper's finding).")
           if rho == rho else "")
        + "</p>"
    )
    return [text, fig]
