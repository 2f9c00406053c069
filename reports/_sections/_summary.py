"""Summary: what to deploy. The best config per objective, against both baselines, with cost."""
from __future__ import annotations

import pandas as pd

from .._results import metric_column, searched
from .._run import RunData
from .._select import best_per_objective, delta_vs
from ._base import (
    Block,
    ReportContext,
    esc,
    fmt,
    fmt_count,
    fmt_flops,
    fmt_signed,
    note,
    per_run,
    register_section,
    structure,
)


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
    active = counts.get("running", 0) + counts.get("pending", 0)
    if active:
        text += f" <b class='live'>The search is still running ({active} trials not done): this report is a snapshot.</b>"
    return text + "</p>"


def _run_summary(run: RunData) -> list[Block]:
    tasks = run.tasks
    results = run.results
    blocks: list[Block] = [_status_line(run)]
    objectives = best_per_objective(results, tasks)
    if not objectives:
        return blocks + [note("No searched trial has finished yet; the leaderboard below shows what has run.")]
    single = run.single
    ensemble_rows = results[results["family"] == "ensemble"]
    ensemble = ensemble_rows.iloc[0] if len(ensemble_rows) else None
    test = run.has_test
    best = objectives[0].row
    vs_ens = delta_vs(best, ensemble, tasks) if ensemble is not None else None
    blocks.append(
        f"<p class='best'>Deploy candidate: trial <b>{esc(best['trial_id'])}</b>, <b>{esc(best['family'])}</b> "
        f"&mdash; {structure(best)}. &Delta;<sub>m</sub> <b>{fmt_signed(best['delta_m'])}</b> vs single-task"
        + (f", <b>{fmt_signed(vs_ens)}</b> vs the ensemble" if vs_ens is not None else "")
        + " (validation)"
        + (f"; on the test split {fmt_signed(best.get('test_delta_m'))} vs single-task" if test else "")
        + f"; {fmt_count(best['params'])} parameters.</p>"
    )
    splits = ["val", "test"] if test else ["val"]
    head = "<tr><th>objective</th><th>trial</th><th>structure</th>"
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
    for label, row, cls in [(o.label, o.row, "") for o in objectives] + [(l, r, "baseline") for l, r in reference_rows]:
        cells = f"<td>{label}</td><td>{esc(row.get('trial_id'))}</td><td>{structure(row)}</td>"
        for split in splits:
            own = row.get("delta_m" if split == "val" else "test_delta_m")
            cells += f"<td>{fmt_signed(own)}</td>"
            cells += f"<td>{fmt_signed(delta_vs(row, ensemble, tasks, split)) if ensemble is not None else '&ndash;'}</td>"
        for spec in tasks:
            for split in splits:
                cells += f"<td>{fmt(row.get(metric_column(spec, split)))}</td>"
        cells += (
            f"<td>{fmt_count(row.get('params'))}</td><td>{fmt_flops(row.get('flops'))}</td>"
            f"<td>{fmt(row.get('latency_ms_b1'), 3)}</td><td>{fmt(row.get('latency_ms_bN'), 3)}</td>"
        )
        body.append(f"<tr class='{cls}'>{cells}</tr>")
    blocks.append(f"<table class='data summary'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>")
    blocks.append(_explain(run, test))
    return blocks


def _explain(run: RunData, test: bool) -> str:
    batch = run.results["latency_batch"].dropna() if "latency_batch" in run.results else pd.Series(dtype=float)
    devices = run.results["cost_device"].dropna().unique().tolist() if "cost_device" in run.results else []
    parts = [
        "&Delta;<sub>m</sub> is the mean relative gain over the baseline across tasks, signed so that positive "
        "is better (Maninis et al. 2019); the single-task baseline is the mean of its seeds.",
    ]
    if test:
        parts.append(
            f"The search chose on the validation split only. The test split was evaluated afterwards, only for "
            f"the {len(run.shortlist)} shortlisted configs (the best per objective and the Pareto-optimal ones: "
            f"{', '.join(esc(t) for t in run.shortlist)}) and the baselines; other trials have no test numbers."
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
