"""Progressive Layered Extraction, PLE, and its one-level form CGC (Customized Gate Control;
Tang, Liu, Zhao & Gong, RecSys 2020), as LibMTL's ``architecture/CGC.py`` and ``PLE.py``
(:mod:`._experts`).

The backbone's stages are cut into ``levels`` extraction levels; at each, ``shared``
experts every task may use and ``specific`` experts per task (copies of the level's
stages), and per task a softmax gate over its own and the shared experts, reading that
task's representation from the level before (the input at the first level). ``levels: 1``
is CGC (LibMTL's ``CGC``: whole-backbone experts, gates on the flattened input);
``levels`` = the number of stages puts one stage in each level (LibMTL's ``PLE`` on a
ResNet: its five stages). ``shared_gate`` (default, the paper) gives the shared experts
their own gate over all the level's experts, at every level but the last; ``false`` is
LibMTL's ``PLE``, whose shared experts read each task's representation instead.

Parameters: ``shared + T specific`` backbones' stages; per level and task a gate
``(F_j + 1)(shared + specific)``; per level but the last, with ``shared_gate``, one gate
``(F_j + 1)(shared + T specific)`` (``F_j`` the gate's input features at level ``j``).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge

from ._base import register_family
from ._experts import AtMostStages, ExpertsModel, build_experts


def _describe(config: dict[str, Any]) -> str:
    levels = int(config.get("ple_levels", 1))
    kind = "cgc" if levels == 1 else f"ple {levels} levels"
    gate = " pooled gates" if config.get("ple_gate") == "pooled" else ""
    libmtl = ", no shared gate" if levels > 1 and config.get("ple_shared_gate") is False else ""
    return f"{kind} {config.get('ple_shared', 1)} shared + {config.get('ple_specific', 1)} per-task experts{gate}{libmtl}"


def _structure(config: dict[str, Any], names: list[str]) -> str:
    levels = int(config.get("ple_levels", 1))
    experts = f"{config.get('ple_shared', 1)} shared and {config.get('ple_specific', 1)} per-task experts"
    where = "one level" if levels == 1 else f"{levels} levels of stages"
    return f"{experts} at {where}; each task's gate mixes its own and the shared experts"


@register_family("ple", describe=_describe, structure=_structure)
def ple(config: dict[str, Any], *, shared: Annotated[int, Ge(1)] = 1, specific: Annotated[int, Ge(0)] = 1,
        levels: Annotated[int, Ge(1), AtMostStages()] = 1, gate: Literal["flat", "pooled"] = "flat",
        shared_gate: bool = True) -> ExpertsModel:
    """``shared`` experts for all tasks and ``specific`` per task at each of ``levels`` levels
    (1: CGC); gates as MMoE's (``flat`` or ``pooled``); ``shared_gate``: the paper's shared
    module gate (``false``: LibMTL's layout)."""
    return build_experts(config, shared=shared, specific=specific, levels=levels, gate=gate, shared_gate=shared_gate)
