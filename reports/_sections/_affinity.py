"""Task affinity (TAG, Fifty et al. 2021): the measured per-stage affinity between tasks,
the branch trees it proposes, and how those trees fared in the search."""
from __future__ import annotations

import json
import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtl_models._task_groups import shared_reason

from mtl_models import format_delta, format_plain, format_rate, format_signed
from mtl_models import results_table as rt

from .._run import RunData
from .._config_summary import config_summary
from ._base import Block, ReportContext, esc, note, per_run, register_section


@register_section("affinity", "Task affinity: which tasks help each other, and where", order=45)
def affinity(ctx: ReportContext) -> list[Block]:
    return per_run(ctx, _run_affinity)


def _run_affinity(run: RunData) -> list[Block]:
    result = run.affinity
    if not result:
        return []  # no affinity measured (affinity.epochs: 0): no section
    opt = result.get("optimizer")
    rates = result.get("lrs") or []
    how = (f"the trial optimiser's own step ({esc(opt)}, with its state, weight decay and the scheduled rate "
           f"{format_rate(min(rates))} to {format_rate(max(rates))})" if opt and rates else "a lookahead step")
    blocks: list[Block] = [
        f"<p>One network with every stage shared trained for {result['epochs']} epochs; every "
        f"{result.get('every', 'few')} steps ({result['steps']} measured), each task's gradient alone was put through "
        f"{how} on one stage (or the whole shared trunk) and every task's loss measured again: an entry is "
        "(1 &minus; L<sub>column</sub> after the row task's step / before it) / learning rate (TAG, Fifty et al. "
        "2021), the mean over the measured steps &plusmn; its standard error. Positive: the row task's update helps "
        "the column task at that stage, so sharing it pays; negative: it hurts. A tree splits a group at a stage only "
        "where the split's gain in affinity is beyond its noise (95 % interval above zero).</p>",
        _heatmaps(result),
        _trees(result),
    ]
    fared = _fared(run, result)
    if fared:
        blocks.append(fared)
    return blocks


def _heatmaps(result: dict) -> go.Figure:
    tasks = result["tasks"]
    panels = [(f"after {s}", m, e) for s, m, e in
              zip(result["stages"], result["affinity"], result.get("stderr") or [None] * len(result["affinity"]))]
    if result.get("network"):
        panels.append(("whole shared trunk", result["network"], result.get("network_stderr")))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.04)
    scale = max((abs(v) for _, m, _ in panels for row in m for v in row), default=1.0) or 1.0
    for col, (_, matrix, errors) in enumerate(panels, start=1):
        text = [[format_plain(v, 2) + (f"<br>\u00b1{format_plain(e, 1)}" if errors else "") for v, e in zip(row, erow or row)]
                for row, erow in zip(matrix, errors or matrix)]
        fig.add_trace(
            go.Heatmap(
                z=matrix, x=tasks, y=tasks, colorscale="RdBu", zmin=-scale, zmax=scale, showscale=col == 1,
                colorbar={"title": "affinity"}, text=text, texttemplate="%{text}",
                hovertemplate="%{y}'s step onto %{x}: %{text}<extra></extra>",
            ),
            row=1, col=col,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_layout(title="Lookahead affinity per stage, mean \u00b1 standard error over the measured steps "
                            "(row: the task whose step; column: the task affected)", height=360)
    return fig


def _trees(result: dict) -> str:
    rows, reasons = [], []
    for i, tree in enumerate(result["trees"]):
        parts = "".join(
            f"<td>{esc(' '.join('{' + ','.join(g) + '}' for g in part))}</td>" for part in tree["branches"]
        )
        rows.append(f"<tr><td>{i}</td><td>{esc(tree['name'])}</td>{parts}<td>{esc(format_plain(tree['score'], 3))}</td></tr>")
        selection = tree.get("selection")
        if selection:
            reasons.append(f"<li>{i}. TAG's network selection chose "
                           + esc(" ".join("{" + ",".join(g) + "}" for g in selection["groups"]))
                           + f" (mean served affinity {format_plain(selection['score'], 3)}); each task branches with the group "
                           "that serves it.</li>")
        for why in tree.get("shared_within_noise", []):
            reasons.append(f"<li>{i}. {esc(shared_reason(why, result['stages']))}</li>")
    head = "".join(f"<th>{esc(s)}</th>" for s in result["stages"])
    why = ("<h4>Why a tree shares a stage</h4><ul>" + "".join(reasons) + "</ul>") if reasons else ""
    return (
        "<h3>Branch trees the affinity proposes</h3><table class='data'><thead><tr><th>#</th><th>tree</th>"
        f"{head}<th>score</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + note("Per stage, the groups of tasks that share a copy of it (groups only split with depth). "
               "The search was seeded with these trees (hard split, tree: affinity).")
        + why
    )


def _fared(run: RunData, result: dict) -> str | None:
    """The proposed trees' results next to the search's best, with their intervals."""
    results = run.results
    if "affinity_tree" not in results:
        return None
    pool_phase = rt.CONFIRM if run.pick.source == rt.CONFIRM else rt.SEARCH
    pool = rt.finished(results[results[rt.PHASE].isin([pool_phase, rt.SEARCH])])
    trees = pool[pool["affinity_tree"].notna()]
    if trees.empty:
        return note("No trial of an affinity-proposed tree finished.")
    summary = config_summary(trees, run.tasks, run.pick.noise)
    best = run.pick.table.iloc[0] if len(run.pick.table) else None
    rows = []
    for _, row in summary.iterrows():
        index = int(json.loads(row["config"]).get("affinity_tree"))
        est = row["estimates"]["delta_m"]
        rows.append(f"<tr><td>{index}. {esc(result['trees'][index]['name'])}</td><td>{int(row['seeds'])}</td>"
                    f"<td>{esc(est.text())}</td></tr>")
    text = ""
    if best is not None:
        top = summary.iloc[0]["estimates"]["delta_m"]
        gap = best["delta_m"] - top.mean
        within = not math.isnan(top.high) and best["delta_m"] <= top.high
        text = (
            f"The best affinity tree scores &Delta;<sub>m</sub> {esc(format_delta(top.mean))}; the best config of the run "
            f"({pool_phase}) {esc(format_delta(best['delta_m']))}, {esc(format_signed(gap))} percentage points apart: "
            + ("within the affinity tree's noise." if within else "beyond the affinity tree's noise.")
        )
    return (
        "<h3>How the proposed trees fared</h3><table class='data'><thead><tr><th>tree</th><th>runs</th>"
        f"<th>&Delta;<sub>m</sub> [95 % interval]</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + (f"<p>{text}</p>" if text else "")
    )
