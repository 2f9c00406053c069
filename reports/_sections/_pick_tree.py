"""The deploy pick's structure drawn: which tasks share which stages.

Placed right after the summary. A hard split of any tree (one split point, one per
task, groups, an affinity tree or explicit branches) is its per-stage partition
(``mtl_models.families.partitions_from_config``): stages left to right, tasks top to
bottom, and at each stage one box per copy of the stage, spanning the tasks that share
it. Groups only split with depth, so ordering the tasks by their group at every stage
keeps each box's tasks adjacent. A cross-stitch network is one column per task with
its units between the stages they follow (Misra et al. 2016); MTAN one shared backbone
with a task's attention after its attended stages (Liu et al. 2019). Inline SVG: the
report stays one self-contained file.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from mtl_models.families import describe_tree, level_stages, partitions_from_config
from mtl_models import results_table as rt

from .._run import RunData
from ._base import Block, ReportContext, esc, fmt_count, note, per_run, register_section, short_label
from ._summary import TASK_COLORS

CELL_W, ROW_H, LABEL_W, HEAD_H, GAP = 92, 26, 110, 24, 10


@register_section("pick-tree", "The pick's structure: which tasks share which stages", order=11)
def pick_tree(ctx: ReportContext) -> list[Block]:
    return per_run(ctx, _run_tree)


def _run_tree(run: RunData) -> list[Block]:
    chosen = run.pick.chosen
    if chosen is None:
        return []
    config = json.loads(chosen["config"])
    tasks = [t.name for t in run.tasks]
    stages = run.stage_names or [f"stage {i}" for i in range(_num_stages(config))]
    params = chosen.get(rt.PARAMS)
    head = (f"<p>The deploy pick, {esc(short_label(chosen))}"
            + (f", {fmt_count(params)} parameters" if params is not None else "") + ":</p>")
    family = config.get("family")
    if family == "hard_split":
        parts = partitions_from_config(config, tasks, len(stages))
        return [head, tree_svg(parts, stages, tasks),
                note("Each box is one copy of a stage, shared by the tasks it spans (grey: a task's own copy); "
                     "the heads are always per task. As text: " + esc(describe_tree(parts, stages)) + ".")]
    if family == "cross_stitch":
        mixed = config.get("cross_stitch_stages")
        after = list(range(len(stages) - 1)) if mixed is None else [s for s in mixed if s < len(stages) - 1]
        parts = [[(t,) for t in tasks] for _ in stages]
        return [head, tree_svg(parts, stages, tasks, links=after, link_label="cross-stitch"),
                note("Every task has its own column of the backbone; after the marked stages a cross-stitch unit "
                     "mixes the columns' activations (Misra et al. 2016).")]
    if family == "mtan":
        parts = [[tuple(tasks)] for _ in stages]
        attended = config.get("mtan_stages")
        after = list(range(len(stages))) if attended is None else list(attended)
        return [head, tree_svg(parts, stages, tasks, links=after, link_label="attention"),
                note("One backbone shared by every task; after the marked stages each task has its own attention "
                     "module over the shared features (MTAN, Liu et al. 2019).")]
    if family in ("mmoe", "ple"):
        return [head, note(esc(experts_words(config, stages)))]
    return [head, note(f"No diagram for the {esc(family)} family.")]


def experts_words(config: dict[str, Any], stages: Sequence[str]) -> str:
    """A mixture-of-experts pick in words: its experts, levels and gates (MMoE, CGC/PLE)."""
    gate = "a 4x4 grid of channel means of" if config.get(f"{config['family']}_gate") == "pooled" else "every value of"
    if config["family"] == "mmoe":
        return (f"{config.get('mmoe_experts', 2)} copies of the whole backbone (experts) shared by every task; each "
                f"task's head reads its own softmax-gated mix of their outputs, its gate reading {gate} the input "
                "(MMoE, Ma et al. 2018).")
    levels = level_stages(len(stages), int(config.get("ple_levels", 1)))
    cut = " | ".join("-".join(dict.fromkeys([stages[g[0]], stages[g[-1]]])) for g in levels)
    plural = "level" if len(levels) == 1 else "levels"
    shared = ("a shared gate mixes all of a level's experts for the next level's shared experts"
              if config.get("ple_shared_gate", True) else "the shared experts read each task's own mix (LibMTL's layout)")
    name = "CGC" if len(levels) == 1 else "PLE"
    reads = "the input" if len(levels) == 1 else "the task's features from the level before (the input at the first)"
    return (f"{len(levels)} extraction {plural} ({cut}); at each, {config.get('ple_shared', 1)} shared and "
            f"{config.get('ple_specific', 1)} per-task experts, copies of the level's stages; each task's gate mixes its own "
            f"and the shared experts, reading {gate} {reads}"
            + (f"; {shared}" if len(levels) > 1 else "") + f" ({name}, Tang et al. 2020).")


def _num_stages(config: dict[str, Any]) -> int:
    return len(config.get("branches") or []) or 4


def task_order(partitions: Sequence[Sequence[Sequence[str]]], tasks: Sequence[str]) -> list[str]:
    """Tasks ordered so that every stage's groups are contiguous (by group index, stage by stage)."""
    def key(task: str) -> tuple[int, ...]:
        return tuple(next(i for i, g in enumerate(part) if task in g) for part in partitions) + (list(tasks).index(task),)

    return sorted(tasks, key=key)


def tree_svg(
    partitions: Sequence[Sequence[Sequence[str]]],
    stages: Sequence[str],
    tasks: Sequence[str],
    links: Sequence[int] = (),
    link_label: str = "",
) -> str:
    """The SVG of a per-stage partition: one ``<rect class='copy'>`` per copy of a stage
    (``data-stage``, ``data-tasks``: its tasks, comma-separated), a head per task, and a
    marker after each stage in ``links`` (cross-stitch units, MTAN attention)."""
    order = task_order(partitions, tasks)
    row = {t: i for i, t in enumerate(order)}
    color = {t: TASK_COLORS[list(tasks).index(t) % len(TASK_COLORS)] for t in tasks}
    width = LABEL_W + (len(stages) + 1) * CELL_W
    height = HEAD_H + len(order) * ROW_H + 8
    out = [f"<svg class='pick-tree' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' font-family='sans-serif' font-size='12'>"]
    for s, name in enumerate(list(stages) + ["head"]):
        x = LABEL_W + s * CELL_W + CELL_W / 2
        out.append(f"<text x='{x:.0f}' y='16' text-anchor='middle' font-weight='bold'>{esc(name)}</text>")
    for t in order:
        y = HEAD_H + row[t] * ROW_H + ROW_H / 2 + 4
        out.append(f"<text x='{LABEL_W - 8}' y='{y:.0f}' text-anchor='end' fill='{color[t]}'>{esc(t)}</text>")
    for s, (name, part) in enumerate(zip(stages, partitions)):
        x = LABEL_W + s * CELL_W + GAP / 2
        for group in part:
            rows = sorted(row[t] for t in group)
            y = HEAD_H + rows[0] * ROW_H + 2
            h = (rows[-1] - rows[0] + 1) * ROW_H - 4
            shared = len(group) > 1
            fill = "#cfe3f5" if shared else "#eeeeee"
            label = f"shared by {len(group)}" if shared else "own"
            title = f"{name}: {', '.join(group)}" if shared else f"{name}: {group[0]}'s own copy"
            out.append(
                f"<rect class='copy' data-stage='{esc(name)}' data-tasks='{esc(','.join(group))}' x='{x:.0f}' "
                f"y='{y:.0f}' width='{CELL_W - GAP}' height='{h:.0f}' rx='6' fill='{fill}' stroke='#4c78a8'>"
                f"<title>{esc(title)}</title></rect>"
                f"<text x='{x + (CELL_W - GAP) / 2:.0f}' y='{y + h / 2 + 4:.0f}' text-anchor='middle' "
                f"fill='#333'>{label}</text>"
            )
        if s in links:
            lx = LABEL_W + (s + 1) * CELL_W
            out.append(f"<line class='link' data-after='{esc(name)}' x1='{lx}' y1='{HEAD_H}' x2='{lx}' "
                       f"y2='{height - 6}' stroke='#d62728' stroke-width='3' stroke-dasharray='4 3'>"
                       f"<title>{esc(link_label)} after {esc(name)}</title></line>")
    x = LABEL_W + len(stages) * CELL_W + GAP / 2
    for t in order:
        y = HEAD_H + row[t] * ROW_H + 2
        out.append(f"<rect class='head' data-tasks='{esc(t)}' x='{x:.0f}' y='{y:.0f}' width='{CELL_W - GAP}' "
                   f"height='{ROW_H - 4}' rx='6' fill='{color[t]}' opacity='0.35'><title>{esc(t)}'s head</title></rect>")
    out.append("</svg>")
    return "".join(out)
