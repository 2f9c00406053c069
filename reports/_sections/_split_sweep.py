"""The split sweep of the cross-stitch paper (Misra et al. 2016, Fig. 2): each task's
metric against the stage where the network splits into task branches."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtl_models import results_table as rt

from .._results import metric_column, searched
from ._base import (
    FAMILY_COLORS,
    RUN_SYMBOLS,
    Block,
    ReportContext,
    family_color,
    register_section,
)


@register_section("split-sweep", "Split sweep: each task against the split point", order=40)
def split_sweep(ctx: ReportContext) -> list[Block]:
    tasks = list({t.name: t for run in ctx.runs for t in run.tasks}.values())
    fig = make_subplots(
        rows=1, cols=len(tasks),
        subplot_titles=[f"{t.name} {t.metric_name} ({'higher' if t.higher_is_better else 'lower'} is better)" for t in tasks],
    )
    shown = False
    for r, run in enumerate(ctx.runs):
        trials = searched(run.results)
        trials = trials[trials[rt.STATUS] == rt.FINISHED]
        single_split = trials["tree"].fillna("single") == "single" if "tree" in trials else True
        hard = trials[(trials["family"] == "hard_split") & single_split].dropna(subset=["split_point"])
        stitch = trials[trials["family"] != "hard_split"]  # soft-sharing families, a column each
        names = run.stage_names
        prefix = f"{run.name}: " if ctx.multi else ""
        symbol = RUN_SYMBOLS[r % len(RUN_SYMBOLS)]
        for col, spec in enumerate(tasks, start=1):
            column = metric_column(spec)
            if column not in trials:
                continue
            x = [_label(int(k), names) for k in hard["split_point"]] + [f.replace("_", "-") for f in stitch["family"]]
            y = list(hard[column]) + list(stitch[column])
            if not y:
                continue
            shown = True
            colors = [FAMILY_COLORS["hard_split"]] * len(hard) + [family_color(f) for f in stitch["family"]]
            noise = run.pick.noise
            sd = noise.metric_std(spec)
            fig.add_trace(
                go.Scatter(
                    x=x, y=y, mode="markers", name=f"{prefix}finished trials (± one run's seed noise)",
                    legendgroup=f"{prefix}trials", showlegend=col == 1,
                    marker={"color": colors, "size": 10, "symbol": symbol},
                    error_y={"type": "constant", "value": sd, "thickness": 1, "width": 3} if sd else None,
                    text=list(hard["trial_id"]) + list(stitch["trial_id"]),
                    hovertemplate="%{text}: %{y:.4g}<extra></extra>",
                ),
                row=1, col=col,
            )
            if len(hard):
                best = hard.groupby("split_point")[column].agg("max" if spec.higher_is_better else "min")
                fig.add_trace(
                    go.Scatter(
                        x=[_label(int(k), names) for k in best.index], y=best.values, mode="lines",
                        line={"color": FAMILY_COLORS["hard_split"]}, name=f"{prefix}best per split point",
                        legendgroup=f"{prefix}best", showlegend=col == 1, hoverinfo="skip",
                    ),
                    row=1, col=col,
                )
            single = run.single.get(column)
            if single is not None:
                fig.add_hline(y=single, line_color=FAMILY_COLORS["single_task"], line_dash="dash", row=1, col=col,
                              annotation_text=f"{prefix}single-task (± std over seeds)", annotation_position="bottom right")
                if sd:
                    fig.add_hrect(y0=single - sd, y1=single + sd, fillcolor=FAMILY_COLORS["single_task"], opacity=0.12,
                                  line_width=0, row=1, col=col)
            ensemble = rt.ensemble_rows(run.results)
            if len(ensemble) and column in ensemble:
                fig.add_hline(y=float(ensemble[column].iloc[0]), line_color=FAMILY_COLORS["ensemble"], line_dash="dot",
                              row=1, col=col, annotation_text=f"{prefix}ensemble", annotation_position="top right")
    if not shown:
        return []
    order = sorted({k for run in ctx.runs for k in searched(run.results)["split_point"].dropna().astype(int)})
    others = sorted({f.replace("_", "-") for run in ctx.runs for f in searched(run.results)["family"].dropna()} - {"hard-split"})
    categories = [_label(k, ctx.runs[0].stage_names) for k in order] + others
    fig.update_xaxes(categoryorder="array", categoryarray=categories, title_text="split after (stages shared)")
    fig.update_layout(height=450, legend={"orientation": "h", "y": -0.25})
    return [
        "<p>Validation metric of every finished hard-split trial by split point (stages before it shared, "
        "one copy of the rest per task), the soft-sharing and mixture-of-experts trials (cross-stitch, MTAN, "
        "MMoE, CGC/PLE) in a column per family, "
        "and the baselines. "
        "The paper's motivating finding is that the best split differs per task. The grey band is the "
        "single-task baseline's mean &plusmn; its standard deviation over seeds, and each trial's bar the same "
        "spread: one run's seed noise, against which a difference between split points has to be read.</p>",
        fig,
    ]


def _label(k: int, names: list[str]) -> str:
    if k == 0:
        return "k=0 (none)"
    return f"k={k} ({names[k - 1]})" if 0 < k <= len(names) else f"k={k}"
