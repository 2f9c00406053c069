"""The self-contained HTML report of a run (plotly inlined: it opens offline)."""
from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import plotly.graph_objects as go

from mtl_models import atomic_write_text, describe_config

from ._results import load_results, metric_column, searched, single_task_summary, task_specs

REPORT_FILE = "report.html"
_FAMILY_COLORS = {"hard_split": "#1f77b4", "cross_stitch": "#d62728", "single_task": "#7f7f7f", "ensemble": "#2ca02c"}
_STATUS_ORDER = {"finished": 0, "running": 1, "pending": 2, "pruned": 3, "errored": 4}


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _count(value: Any) -> str:
    return "&ndash;" if value is None or pd.isna(value) else f"{int(value):,}"


def _structure(row: pd.Series) -> str:
    if row.get("family") == "single_task":
        return "one network per task (mean over seeds)"
    if row.get("family") == "ensemble":
        return f"{int(row['ensemble_size'])} single-task nets per task, averaged"
    return html.escape(describe_config(json.loads(row["config"]))) if isinstance(row.get("config"), str) else ""


def _leaderboard(results: pd.DataFrame) -> str:
    tasks = task_specs(results)
    single = single_task_summary(results)
    ensemble = results[results["family"] == "ensemble"]
    rows = [pd.Series(single)] + [r for _, r in ensemble.iterrows()]
    trials = searched(results).copy()
    trials["_order"] = trials["status"].map(_STATUS_ORDER).fillna(9)
    trials = trials.sort_values(["_order", "delta_m"], ascending=[True, False])
    header = (
        "<tr><th>#</th><th>trial</th><th>family</th><th>structure</th><th>&Delta;<sub>m</sub> (%)</th>"
        + "".join(f"<th>{html.escape(t.name)} {t.metric_name} {'&uarr;' if t.higher_is_better else '&darr;'}</th>" for t in tasks)
        + "<th>params</th><th>lr</th><th>epochs</th><th>status</th></tr>"
    )
    body = []
    for i, row in enumerate(rows + [r for _, r in trials.iterrows()]):
        baseline = i < len(rows)
        cls = "baseline" if baseline else f"status-{row['status']}"
        rank = "" if baseline else str(i - len(rows) + 1)
        metric_cells = "".join(
            f"<td>{_fmt(row.get(metric_column(t)))}"
            + (f" &plusmn; {_fmt(row.get(metric_column(t) + ':std'), 2)}" if pd.notna(row.get(metric_column(t) + ":std", math.nan)) else "")
            + "</td>"
            for t in tasks
        )
        error = f' title="{html.escape(str(row["error"]))}"' if isinstance(row.get("error"), str) else ""
        body.append(
            f'<tr class="{cls}"><td>{rank}</td><td>{html.escape(str(row["trial_id"]))}</td>'
            f"<td>{html.escape(str(row['family']))}</td><td>{_structure(row)}</td>"
            f"<td>{_fmt(row.get('delta_m'), 3)}</td>{metric_cells}"
            f"<td>{_count(row.get('params'))}</td><td>{_fmt(row.get('lr'), 3)}</td>"
            f"<td>{_fmt(row.get('epochs_run'))}</td><td{error}>{html.escape(str(row['status']))}</td></tr>"
        )
    return f'<table class="leaderboard"><thead>{header}</thead><tbody>{"".join(body)}</tbody></table>'


def _split_plot(results: pd.DataFrame) -> go.Figure:
    """Delta_m against split point (hard split) with cross-stitch trials in their own column."""
    trials = searched(results)
    trials = trials[trials["delta_m"].notna()]
    fig = go.Figure()
    for family, group in trials.groupby("family"):
        if family == "hard_split":
            x = [f"k={int(k)}" if t == "single" else f"{t} tree" for k, t in zip(group["split_point"], group["tree"])]
        else:
            x = ["cross-stitch"] * len(group)
        pruned = group["status"] != "finished"
        fig.add_trace(
            go.Scatter(
                x=x,
                y=group["delta_m"],
                mode="markers",
                name=family,
                marker={
                    "color": _FAMILY_COLORS.get(family),
                    "size": 11,
                    "symbol": ["circle-open" if p else "circle" for p in pruned],
                },
                text=[f"{t} ({s})" for t, s in zip(group["trial_id"], group["status"])],
                hovertemplate="%{text}<br>Δm=%{y:.2f}%<extra></extra>",
            )
        )
    ensemble = results[results["family"] == "ensemble"]
    for _, row in ensemble.iterrows():
        fig.add_hline(y=row["delta_m"], line_dash="dot", line_color=_FAMILY_COLORS["ensemble"], annotation_text="ensemble")
    fig.add_hline(y=0.0, line_color=_FAMILY_COLORS["single_task"], annotation_text="single-task")
    singles = trials[trials["tree"] == "single"]
    order = sorted({f"k={int(k)}" for k in singles["split_point"]}, key=lambda s: int(s[2:]))
    order += ["per_task tree", "grouped tree", "cross-stitch"]
    fig.update_layout(
        title="Δ<sub>m</sub> by sharing structure (open markers: pruned, Δ<sub>m</sub> at the pruning epoch)",
        xaxis={"title": "hard split: stages shared (k) / cross-stitch", "categoryorder": "array", "categoryarray": order},
        yaxis_title="Δ<sub>m</sub> vs single-task (%)",
        height=450,
    )
    return fig


def _curves_plot(results: pd.DataFrame, curves: pd.DataFrame) -> go.Figure:
    """Delta_m per epoch of every searched trial; pruned trials end in a cross."""
    fig = go.Figure()
    if curves.empty or "delta_m" not in curves:
        return fig
    status = results.set_index("trial_id")["status"].to_dict()
    family = results.set_index("trial_id")["family"].to_dict()
    for trial_id, curve in curves[curves["phase"] == "search"].groupby("trial_id"):
        pruned = status.get(trial_id) == "pruned"
        fig.add_trace(
            go.Scatter(
                x=curve["epoch"],
                y=curve["delta_m"],
                mode="lines+markers",
                name=f"{trial_id} ({family.get(trial_id)}, {status.get(trial_id)})",
                line={"color": "#bbbbbb" if pruned else _FAMILY_COLORS.get(family.get(trial_id)), "dash": "dot" if pruned else "solid"},
                marker={"symbol": ["circle"] * (len(curve) - 1) + ["x" if pruned else "circle"], "size": [5] * (len(curve) - 1) + [12 if pruned else 5]},
            )
        )
    fig.update_layout(
        title="Learning curves (grey dotted, ending in ×: stopped by the Optuna pruner)",
        xaxis={"title": "epoch", "dtick": 1},
        yaxis_title="Δ<sub>m</sub> vs single-task (%)",
        height=500,
    )
    return fig


def _summary(results: pd.DataFrame, meta: dict[str, Any]) -> str:
    trials = searched(results)
    counts = trials["status"].value_counts().to_dict()
    done = trials[(trials["status"] == "finished") & trials["delta_m"].notna()]
    parts = [
        f"<p><b>{len(trials)}</b> searched trials: "
        + ", ".join(f"{n} {html.escape(s)}" for s, n in sorted(counts.items()))
        + ".</p>"
    ]
    if not done.empty:
        best = done.loc[done["delta_m"].idxmax()]
        ensemble = results[results["family"] == "ensemble"]
        vs_ens = ""
        if not ensemble.empty and pd.notna(ensemble["delta_m"].iloc[0]):
            vs_ens = f" (the ensemble baseline: {ensemble['delta_m'].iloc[0]:+.2f} %)"
        parts.append(
            f"<p class='best'>Best: trial <b>{html.escape(str(best['trial_id']))}</b>, "
            f"<b>{html.escape(str(best['family']))}</b> &mdash; {_structure(best)}: "
            f"&Delta;<sub>m</sub> = <b>{best['delta_m']:+.2f} %</b> against single-task{vs_ens}, "
            f"{int(best['params']):,} parameters.</p>"
        )
    if meta:
        parts.append(
            "<p class='meta'>"
            + " &middot; ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in meta.items())
            + "</p>"
        )
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table.leaderboard{border-collapse:collapse;font-size:.85em;width:100%}
.leaderboard th,.leaderboard td{border-bottom:1px solid #eee;padding:.3em .5em;text-align:left}
.leaderboard tr.baseline{background:#f3f7ff;font-weight:600}
.leaderboard tr.status-pruned,.leaderboard tr.status-errored{color:#888}
.best{font-size:1.1em;background:#f0fff0;padding:.6em;border-left:4px solid #2ca02c}
.meta{color:#666;font-size:.85em}
"""

Section = Callable[[pd.DataFrame, pd.DataFrame], go.Figure]
FIGURES: list[tuple[str, Section]] = [
    ("Sharing structure", lambda results, curves: _split_plot(results)),
    ("Learning curves and pruning", _curves_plot),
]


def build_report(results: pd.DataFrame, curves: pd.DataFrame, title: str, meta: dict[str, Any]) -> str:
    """The report as one HTML string; the first figure inlines plotly.js for offline use."""
    figures = []
    for i, (heading, make) in enumerate(FIGURES):
        fig = make(results, curves)
        figures.append(
            f"<h2>{html.escape(heading)}</h2>"
            + fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"fig{i}")
        )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{_summary(results, meta)}"
        f"<h2>Leaderboard</h2><p>Baselines first; &Delta;<sub>m</sub> is the mean relative gain over the "
        f"single-task baseline across tasks, signed so that positive is better (Maninis et al. 2019).</p>"
        f"{_leaderboard(results)}{''.join(figures)}</body></html>"
    )


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of ``run_dir`` (from its results tables) to ``out`` (default ``run_dir/report.html``)."""
    run_dir = Path(run_dir)
    results, curves = load_results(run_dir)
    meta: dict[str, Any] = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    title = "mtlsearch report"
    experiment = run_dir / "experiment.json"
    if experiment.is_file():
        exp = json.loads(experiment.read_text())
        title = f"mtlsearch: {exp.get('name', run_dir.name)}"
        meta = {
            "backbone": exp["backbone"]["name"],
            "tasks": ", ".join(t["name"] for t in exp["tasks"]),
            "data": exp["data"]["source"],
            "epochs": exp["train"]["epochs"],
            **meta,
        }
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    atomic_write_text(out, build_report(results, curves, title, meta))
    return out
