"""Report sections: one module per section, each registered in order (see ``_base``)."""
from ._base import SECTIONS, Block, ReportContext, Section, available_sections, register_section, sections, short_label, worded_label
from . import (  # noqa: F401  (register the built-in sections)
    _affinity,
    _cross_stitch,
    _leaderboard,
    _like_for_like,
    _optuna,
    _pareto,
    _per_class,
    _pick_tree,
    _progress,
    _split_sweep,
    _summary,
)

__all__ = [
    "SECTIONS", "Block", "ReportContext", "Section", "available_sections", "register_section", "sections", "short_label",
    "worded_label",
]
