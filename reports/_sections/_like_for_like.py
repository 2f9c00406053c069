"""Like for like: the single-task networks trained with the searched training hyperparameters,
against the pick, seed by seed (``reports._like_for_like``)."""
from __future__ import annotations

import plotly.graph_objects as go

from mtl_models import format_rate

from .._like_for_like import tuned_reference
from .._run import RunData
from ._base import Block, ReportContext, esc, per_run, register_section, short_label


@register_section("like-for-like", "Like for like: a tuned single-task reference", order=15)
def like_for_like(ctx: ReportContext) -> list[Block]:
    if not any(_reference(run) is not None for run in ctx.runs):
        return []
    return per_run(ctx, _run_like_for_like)


def _reference(run: RunData):
    chosen = run.pick.chosen
    return tuned_reference(run.results, None if chosen is None else chosen["config_key"])


def _run_like_for_like(run: RunData) -> list[Block]:
    ref = _reference(run)
    if ref is None:
        return []
    chosen = run.pick.chosen
    label = esc(short_label(chosen)) if chosen is not None else "no pick"
    tuned = ", ".join(f"<code>{esc(k)}</code> {format_rate(v)}" if isinstance(v, float) else f"<code>{esc(k)}</code> {esc(v)}"
                      for k, v in ref.tuned.items())
    blocks: list[Block] = [
        "<p>The search tuned training hyperparameters the single-task baseline trains without; a gain "
        "could come from that tuning rather than from sharing. The single-task networks (a hard split that "
        f"shares nothing: every task its own column and head) were trained with the searched {tuned} on the "
        f"seeds {', '.join(map(str, ref.seeds))}, the pick's own where it shares them. Its &Delta;<sub>m</sub> is "
        "what tuning alone buys; the pick minus it, paired seed by seed, is what sharing buys.</p>",
    ]
    rows = []
    for s in ref.splits:
        name = "validation (selection)" if s.split == "val" else "test (held out)"
        recovered = "&ndash;" if s.recovered_pct is None else f"{s.recovered_pct:.0f} %"
        rows.append(
            f"<tr><td>{name}</td><td>{esc(s.reference.text())}</td><td>{esc(s.pick.text())}</td>"
            f"<td>{'&ndash;' if ref.pick_is_reference else esc(s.difference.text())}</td><td>{recovered}</td></tr>"
        )
    blocks.append(
        "<table><tr><th>split</th><th>tuned single-task &Delta;<sub>m</sub></th>"
        f"<th>pick &Delta;<sub>m</sub> ({label})</th><th>pick &minus; tuned single-task, paired</th>"
        "<th>share of the pick's gain it recovers</th></tr>" + "".join(rows) + "</table>"
    )
    blocks.append(
        "<p class='note'>A &Delta;<sub>m</sub>'s interval here is over its own seeds, the baseline mean "
        "B<sub>t</sub> taken as fixed (the summary's intervals also count the single-task seeds' noise); the "
        "paired difference needs no such assumption: both sides are measured against the same B<sub>t</sub>, "
        "which cancels.</p>"
    )
    if ref.pick_is_reference:
        blocks.append("<p>The pick is this reference itself: the search's gain is the tuning, not sharing.</p>")
    fig = go.Figure()
    for s in ref.splits:
        for seed, (single, pick) in sorted(s.per_seed.items()):
            fig.add_trace(go.Scatter(
                x=[f"{s.split}: tuned single-task", f"{s.split}: pick"], y=[single, pick], mode="lines+markers",
                name=f"{s.split} seed {seed}", legendgroup=s.split,
                hovertemplate=f"seed {seed}<br>%{{x}}: Δm=%{{y:+.2f}}%<extra></extra>",
            ))
    if fig.data:
        fig.update_layout(title="Δm per seed: the tuned single-task reference and the pick (lines pair a seed)",
                          yaxis_title="Δm (%)", height=380)
        blocks.append(fig)
    return blocks
