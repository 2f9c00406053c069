"""The narrow base of report sections: a context in, blocks of HTML and figures out.

A section is one function ``render(ctx) -> list[Block]`` in its own module, registered
with :func:`register_section`; the report shows the sections in ``order``. A block is
an HTML fragment (``str``) or a plotly figure. Adding a section touches no other.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any, Callable, Union

import pandas as pd
import plotly.graph_objects as go

from mtl_models import (
    Registry,
    TaskSpec,
    describe_config,
    describe_structure,
    format_count,
    format_delta,
    format_flops,
    format_metric,
    format_plain,
)

from .._run import RunData

Block = Union[str, go.Figure]
Render = Callable[["ReportContext"], list[Block]]

FAMILY_COLORS = {"hard_split": "#1f77b4", "cross_stitch": "#d62728", "mtan": "#9467bd", "mmoe": "#ff7f0e",
                 "ple": "#8c564b", "single_task": "#7f7f7f", "ensemble": "#2ca02c"}
_OTHER_COLORS = ["#ff7f0e", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def family_color(family: object) -> str:
    """A family's colour in every figure; a plugin's family gets one of the others, by name."""
    name = str(family)
    return FAMILY_COLORS.get(name) or _OTHER_COLORS[sum(name.encode()) % len(_OTHER_COLORS)]
RUN_SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "star"]


@dataclass
class ReportContext:
    """What every section sees: the runs of the report (one, or several to compare)."""

    runs: list[RunData]

    @property
    def multi(self) -> bool:
        return len(self.runs) > 1

    def combined(self) -> pd.DataFrame:
        """All runs' results in one table with a ``run`` column."""
        return pd.concat([r.results.assign(run=r.name) for r in self.runs], ignore_index=True)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    order: int
    render: Render


SECTIONS: Registry[Section] = Registry("report section", defined_by=lambda section: section.render)


def register_section(key: str, title: str, order: int, *, replace: bool = False) -> Callable[[Render], Render]:
    """Add ``render`` to the report as section ``key`` (its anchor), headed ``title``, at
    ``order``; a taken key is refused unless ``replace``."""

    def decorator(render: Render) -> Render:
        SECTIONS.register(key, Section(key, title, order, render), replace=replace)
        return render

    return decorator


def sections() -> list[Section]:
    """The registered sections in report order."""
    return sorted((section for _, section in SECTIONS.items()), key=lambda s: s.order)


def available_sections() -> list[str]:
    """Section keys in report order."""
    return [s.key for s in sections()]


def esc(value: Any) -> str:
    return html.escape(str(value))


def missing(value: Any) -> bool:
    """``None``, NaN or pandas' NA (a table cell with no value)."""
    if value is None or isinstance(value, (str, dict, list, tuple)):
        return value is None
    return bool(pd.isna(value))


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell with ``digits`` significant digits, never in exponent
    notation (``–`` when missing); metrics, counts and Delta_m have their own below."""
    if missing(value):
        return "&ndash;"
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        return format_plain(value, digits)
    return esc(value)


def fmt_metric(value: Any, spec: TaskSpec, std: Any = None) -> str:
    """A task's metric as every view writes it (:func:`mtl_models.format_metric`): ``0.873 &plusmn; 0.012``."""
    if missing(value):
        return "&ndash;"
    return esc(format_metric(value, spec.metric_name, None if missing(std) else std))


def fmt_count(value: Any) -> str:
    return "&ndash;" if missing(value) else format_count(value)


def fmt_signed(value: Any) -> str:
    """Delta_m (or a term) without an interval: ``+1.90 %``."""
    return "&ndash;" if missing(value) else format_delta(value)


def fmt_flops(value: Any) -> str:
    return "&ndash;" if missing(value) else format_flops(value)


def fmt_ms(value: Any) -> str:
    """A latency in milliseconds (the column says ms): ``1.23``."""
    return "&ndash;" if missing(value) else format_plain(value, 3)


def structure(row: pd.Series | dict) -> str:
    """A row's sharing structure (HTML): the short form, and beneath it the same in words."""
    family = row.get("family")
    if family in ("single_task", "ensemble"):
        if family == "ensemble":
            return f"{int(row['ensemble_size'])} single-task nets per task, averaged"
        task = row.get("task")
        return f"one network for {esc(task)}" if isinstance(task, str) else "one network per task (mean over seeds)"
    words = structure_words(row)
    return esc(short_label(row)) + (f"<br><span class='words'>{esc(words)}</span>" if words else "")


def structure_words(row: pd.Series | dict) -> str:
    """The row's structure in words (``shares nothing: one network per task``); empty when unknown."""
    config = row.get("config")
    return describe_structure(json.loads(config)) if isinstance(config, str) else ""


def short_label(row: pd.Series | dict) -> str:
    """A plain-text label: ``hard_split k=2``, ``cross_stitch a=(0.90, 0.10) lr x10 [gradnorm]``."""
    config = row.get("config")
    return describe_config(json.loads(config)) if isinstance(config, str) else str(row.get("family"))


def worded_label(row: pd.Series | dict) -> str:
    """The short label with the structure in words: ``hard_split k=0 (shares nothing: one network per task)``."""
    words = structure_words(row)
    return short_label(row) + (f" ({words})" if words else "")


def note(text: str) -> str:
    return f"<p class='note'>{text}</p>"


def per_run(ctx: ReportContext, render: Callable[[RunData], list[Block]]) -> list[Block]:
    """``render(run)`` for each run, under the run's name as a sub-heading when the report compares several.

    A run with nothing to show gets no heading, and the section none when no run has anything.
    """
    blocks: list[Block] = []
    for run in ctx.runs:
        own = render(run)
        if own and ctx.multi:
            blocks.append(f"<h3>{esc(run.name)} <span class='meta'>({esc(run.run_dir)})</span></h3>")
        blocks += own
    return blocks
