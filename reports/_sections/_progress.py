"""Search behaviour: how fast the search found its best config, and where the pruner cut."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from mtl_models import results_table as rt

from .._results import searched
from .._run import RunData
from ._base import (
    FAMILY_COLORS,
    Block,
    ReportContext,
    family_color,
    per_run,
    register_section,
)


@register_section("progress", "Search behaviour: progress and pruning", order=60)
def progress(ctx: ReportContext) -> list[Block]:
    return per_run(ctx, _run_progress)


def epochs_in_order(run: RunData) -> pd.DataFrame:
    """The searched trials' epochs in the order they were reported, numbered ``spent`` 1, 2, ..."""
    curves = run.curves
    if curves.empty or rt.DELTA_M not in curves:
        return pd.DataFrame()
    curves = rt.searched(curves).copy()
    order = {t: i for i, t in enumerate(run.results["trial_id"])}
    curves["_trial_order"] = curves["trial_id"].map(order)
    keys = ["timestamp", "_trial_order", "epoch"] if "timestamp" in curves else ["_trial_order", "epoch"]
    curves = curves.sort_values(keys, kind="stable").reset_index(drop=True)
    curves["spent"] = range(1, len(curves) + 1)
    return curves


def _run_progress(run: RunData) -> list[Block]:
    epochs = epochs_in_order(run)
    if epochs.empty:
        return []
    results = run.results.set_index("trial_id")
    status = results["status"].to_dict()
    budget = results["epochs"].to_dict()
    family = results["family"].to_dict()
    best, best_so_far = -math.inf, []
    for row in epochs.itertuples():
        final = status.get(row.trial_id) == "finished" and row.epoch >= budget.get(row.trial_id, math.inf)
        if final and pd.notna(row.delta_m):
            best = max(best, float(row.delta_m))
        best_so_far.append(best if math.isfinite(best) else None)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=epochs["spent"], y=epochs["delta_m"], mode="markers", name="Δm of each trial-epoch",
            marker={"color": "#bbbbbb", "size": 6}, text=epochs["trial_id"],
            hovertemplate="%{text}<br>%{x}th trial-epoch: Δm=%{y:+.2f}%<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(x=epochs["spent"], y=best_so_far, mode="lines", line={"shape": "hv", "color": "#2ca02c", "width": 3},
                   name="best finished config so far")
    )
    fig.add_hline(y=0.0, line_color=FAMILY_COLORS["single_task"], annotation_text="single-task")
    fig.update_layout(
        title="Best Δm so far against trial-epochs spent", xaxis_title="trial-epochs spent (training budget used)",
        yaxis_title="Δm vs single-task (%, validation)", height=420,
    )
    trials = searched(run.results)
    answered = trials["answered_from"].notna() if "answered_from" in trials else pd.Series(False, index=trials.index)
    full = int(trials["epochs"].sum())
    spent = int(trials.loc[~answered, "epochs_run"].sum())
    pruned = int((trials[rt.STATUS] == rt.PRUNED).sum())
    text = (
        f"<p>The search spent <b>{spent}</b> trial-epochs on {len(trials)} trials; without pruning they would "
        f"have cost {full} ({(1 - spent / full) * 100 if full else 0:.0f} % saved by stopping {pruned} trials early"
        + (f" and by answering {int(answered.sum())} without training, from the runs already made of the same "
           f"config and seed: a hard split that shares nothing, at the baselines' training settings under "
           f"Adam/AdamW, is the single-task baselines" if answered.any() else "")
        + ").</p>"
    )
    return [text, fig, _curves(run, epochs, status, family)]


def _curves(run: RunData, epochs: pd.DataFrame, status: dict, family: dict) -> go.Figure:
    fig = go.Figure()
    for trial_id, curve in epochs.groupby("trial_id", sort=False):
        curve = curve.sort_values("epoch")
        pruned = status.get(trial_id) == "pruned"
        n = len(curve)
        fig.add_trace(
            go.Scatter(
                x=curve["epoch"], y=curve["delta_m"], mode="lines+markers",
                name=f"{trial_id} ({family.get(trial_id)}, {status.get(trial_id)})",
                line={"color": "#bbbbbb" if pruned else family_color(family.get(trial_id)), "dash": "dot" if pruned else "solid"},
                marker={"symbol": ["circle"] * (n - 1) + ["x" if pruned else "circle"], "size": [5] * (n - 1) + [13 if pruned else 5],
                        "color": "#d62728" if pruned else family_color(family.get(trial_id))},
            )
        )
    fig.update_layout(
        title="Learning curves (grey dotted, ending in a red ×: stopped there by the Optuna pruner)",
        xaxis={"title": "epoch", "dtick": 1}, yaxis_title="Δm vs single-task (%, validation)", height=480,
    )
    return fig
