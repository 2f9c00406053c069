"""Pareto front: which configs buy their Delta_m most cheaply (parameters, latency)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtl_models import results_table as rt

from .._pareto import pareto_mask
from ._base import (
    FAMILY_COLORS,
    RUN_SYMBOLS,
    Block,
    ReportContext,
    family_color,
    register_section,
    short_label,
)

_COSTS = ((rt.PARAMS, "parameters"), (rt.LATENCY_B1, "latency at batch 1 (ms)"))


@register_section("pareto", "Pareto front: Δm against cost", order=30)
def pareto(ctx: ReportContext) -> list[Block]:
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"Δm vs {label}" for _, label in _COSTS], horizontal_spacing=0.08)
    any_points = False
    for r, run in enumerate(ctx.runs):
        results = run.results
        done = rt.finished_searched(results)
        prefix = f"{run.name}: " if ctx.multi else ""
        symbol = RUN_SYMBOLS[r % len(RUN_SYMBOLS)]
        for col, (cost, label) in enumerate(_COSTS, start=1):
            if cost not in done or done[cost].isna().all():
                continue
            any_points = True
            for family, group in done.groupby("family"):
                fig.add_trace(
                    go.Scatter(
                        x=group[cost], y=group["delta_m"], mode="markers",
                        name=f"{prefix}{family}", legendgroup=f"{prefix}{family}", showlegend=col == 1,
                        marker={"color": family_color(family), "size": 10, "symbol": symbol, "opacity": 0.8},
                        text=[f"{t}: {short_label(row)}" for t, (_, row) in zip(group["trial_id"], group.iterrows())],
                        hovertemplate="%{text}<br>" + label + "=%{x:.4g}<br>Δm=%{y:+.2f}%<extra></extra>",
                    ),
                    row=1, col=col,
                )
            front = done[pareto_mask(done, "delta_m", cost)].sort_values(cost)
            fig.add_trace(
                go.Scatter(
                    x=front[cost], y=front["delta_m"], mode="lines", line={"shape": "hv", "color": "#444", "dash": "dash"},
                    name=f"{prefix}Pareto front", legendgroup=f"{prefix}front", showlegend=col == 1, hoverinfo="skip",
                ),
                row=1, col=col,
            )
            single = run.single
            ensemble = rt.ensemble_rows(results)
            refs = [("single-task (one net per task)", single.get(cost), 0.0, "star", FAMILY_COLORS["single_task"])]
            refs += [("ensemble", e[cost], e["delta_m"], "diamond", FAMILY_COLORS["ensemble"]) for _, e in ensemble.iterrows()]
            for name, x, y, sym, color in refs:
                if x is None or pd.isna(x) or pd.isna(y):
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=[x], y=[y], mode="markers", name=f"{prefix}{name}", legendgroup=f"{prefix}{name}",
                        showlegend=col == 1, marker={"symbol": sym, "size": 15, "color": color, "line": {"width": 1, "color": "#000"}},
                        hovertemplate=name + "<br>" + label + "=%{x:.4g}<br>Δm=%{y:+.2f}%<extra></extra>",
                    ),
                    row=1, col=col,
                )
    if not any_points:
        return []
    fig.update_xaxes(title_text="parameters", type="log", row=1, col=1)
    fig.update_xaxes(title_text="latency at batch 1 (ms)", type="log", row=1, col=2)
    fig.update_yaxes(title_text="Δm vs single-task (%, validation)", row=1, col=1)
    fig.update_layout(height=480, legend={"orientation": "h", "y": -0.2})
    return [
        "<p>Finished searched configs; the dashed step line joins the Pareto-optimal ones (no other config has "
        "a higher &Delta;<sub>m</sub> at no higher cost). Baselines for reference.</p>",
        fig,
    ]
