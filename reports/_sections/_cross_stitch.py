"""Cross-stitch analysis (Misra et al. 2016, sec. 6): the learned alphas per stage and channel.

``alpha[i, j, c]`` is how much task ``i``'s column takes from task ``j``'s at channel
``c`` after a stage; alpha_same (``i == j``) near 1 and alpha_diff near 0 mean the
tasks keep to themselves at that depth, similar values mean they share.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtl_models import CrossStitchModel, build_model, format_delta, load_checkpoint_state
from mtl_models import results_table as rt

from .._results import searched
from .._run import RunData
from ._base import Block, ReportContext, esc, per_run, register_section

MAX_TRIALS = 6


@register_section("cross-stitch", "Cross-stitch units: what the alphas learned", order=50)
def cross_stitch(ctx: ReportContext) -> list[Block]:
    return per_run(ctx, _run_alphas)


def trial_alphas(row: pd.Series) -> dict[str, np.ndarray]:
    """``{stage index: alpha (T, T, C)}`` of a cross-stitch trial, read from its checkpoint."""
    model = build_model(json.loads(row["config"]))
    if not isinstance(model, CrossStitchModel):
        raise TypeError(f"Trial {row['trial_id']!r} is a {row['family']!r} model, not cross-stitch.")
    model.load_state_dict(load_checkpoint_state(row["checkpoint"])["model"])
    return {stage: alpha.numpy() for stage, alpha in model.alphas().items()}


def _run_alphas(run: RunData) -> list[Block]:
    trials = searched(run.results)
    trials = trials[(trials["family"] == "cross_stitch") & trials["checkpoint"].notna()]
    trials = trials[trials[rt.STATUS].isin([rt.FINISHED, rt.PRUNED])]
    if trials.empty:
        return []
    trials = trials.assign(_done=trials[rt.STATUS] == rt.FINISHED).sort_values(["_done", rt.DELTA_M], ascending=False)
    trials = trials.head(MAX_TRIALS)
    alphas = {row["trial_id"]: trial_alphas(row) for _, row in trials.iterrows()}
    best = trials.iloc[0]
    names = run.stage_names
    tasks = [t.name for t in run.tasks]
    blocks: list[Block] = [
        f"<p>Trial <b>{esc(best['trial_id'])}</b> ({esc(best['status'])}, &Delta;<sub>m</sub> "
        f"{esc(format_delta(best['delta_m']))}), initialised at alpha_same={float(best['alpha_same']):.2f}, "
        f"alpha_diff={float(best['alpha_diff']):.2f}, unit learning rate &times;{float(best['lr_multiplier']):.3g}.</p>",
        _heatmaps(alphas[best["trial_id"]], names, tasks),
        _histograms(alphas[best["trial_id"]], names, float(best["alpha_same"]), float(best["alpha_diff"])),
    ]
    if len(alphas) > 1:
        blocks.append(_by_depth(trials, alphas, names))
    return blocks


def _stage_label(stage: str, names: list[str]) -> str:
    s = int(stage)
    return f"after {names[s]}" if s < len(names) else f"after stage {s}"


def _heatmaps(alphas: dict[str, np.ndarray], names: list[str], tasks: list[str]) -> go.Figure:
    stages = sorted(alphas, key=int)
    fig = make_subplots(rows=len(stages), cols=1, subplot_titles=[_stage_label(s, names) for s in stages], vertical_spacing=0.12)
    for row, stage in enumerate(stages, start=1):
        alpha = alphas[stage]
        T = alpha.shape[0]
        z = alpha.reshape(T * T, -1)
        labels = [f"{tasks[i]} ← {tasks[j]}" for i in range(T) for j in range(T)]
        fig.add_trace(
            go.Heatmap(
                z=z, y=labels, x=list(range(z.shape[1])), colorscale="RdBu", zmid=0.5 if z.min() >= 0 else 0.0,
                coloraxis=None, showscale=row == 1, colorbar={"title": "α"},
                hovertemplate="%{y}, channel %{x}: α=%{z:.3f}<extra></extra>",
            ),
            row=row, col=1,
        )
    fig.update_xaxes(title_text="channel", row=len(stages), col=1)
    fig.update_layout(
        title="α per channel: task i's column takes α·(task j's activation)", height=max(300, 170 * len(stages) + 80)
    )
    return fig


def _histograms(alphas: dict[str, np.ndarray], names: list[str], init_same: float, init_diff: float) -> go.Figure:
    stages = sorted(alphas, key=int)
    fig = make_subplots(rows=1, cols=len(stages), subplot_titles=[_stage_label(s, names) for s in stages], shared_yaxes=True)
    for col, stage in enumerate(stages, start=1):
        alpha = alphas[stage]
        T = alpha.shape[0]
        eye = np.eye(T, dtype=bool)
        same = alpha[eye].ravel()
        diff = alpha[~eye].ravel()
        for values, name, color, init in ((same, "alpha_same", "#1f77b4", init_same), (diff, "alpha_diff", "#ff7f0e", init_diff)):
            fig.add_trace(
                go.Histogram(x=values, name=name, legendgroup=name, showlegend=col == 1, opacity=0.7,
                             marker_color=color, nbinsx=20),
                row=1, col=col,
            )
            fig.add_vline(x=init, line_dash="dot", line_color=color, row=1, col=col)
        fig.update_xaxes(title_text="α", row=1, col=col)
    fig.update_layout(barmode="overlay", height=360, title="Histograms of alpha_same and alpha_diff (dotted: initial values)")
    return fig


def _by_depth(trials: pd.DataFrame, alphas: dict[str, dict[str, np.ndarray]], names: list[str]) -> go.Figure:
    fig = go.Figure()
    for _, row in trials.iterrows():
        per_stage = alphas[row["trial_id"]]
        stages = sorted(per_stage, key=int)
        x = [_stage_label(s, names) for s in stages]
        for kind, dash in (("same", "solid"), ("diff", "dot")):
            values = []
            for s in stages:
                a = per_stage[s]
                eye = np.eye(a.shape[0], dtype=bool)
                values.append(float(a[eye].mean() if kind == "same" else a[~eye].mean()))
            fig.add_trace(
                go.Scatter(
                    x=x, y=values, mode="lines+markers", line={"dash": dash},
                    name=f"{row['trial_id']} alpha_{kind} ({row['status']}, Δm {format_delta(row['delta_m'])})",
                )
            )
    fig.update_layout(
        title="Mean alpha_same (solid) and alpha_diff (dotted) by depth, per cross-stitch trial",
        yaxis_title="mean α", height=420,
    )
    return fig
