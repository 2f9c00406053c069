"""Multi-gate Mixture-of-Experts, MMoE (Ma, Zhao, Yi, Chen, Hong & Chi, KDD 2018), as LibMTL's
``architecture/MMoE.py``: ``experts`` copies of the whole backbone shared by every task, and
per task a softmax gate on the flattened input that weights the experts' outputs for that
task's head (:mod:`._experts`: one level, no task-specific experts).

Parameters: ``experts`` backbones, per task a gate ``(F + 1) experts`` (``F`` the gate's
input features: ``C H W`` flat, ``C min(4, H) min(4, W)`` pooled) and a head.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge

from ._base import register_family
from ._experts import ExpertsModel, build_experts


def _describe(config: dict[str, Any]) -> str:
    gate = " pooled gates" if config.get("mmoe_gate") == "pooled" else ""
    return f"mmoe {config.get('mmoe_experts', 2)} shared experts{gate}"


def _structure(config: dict[str, Any], names: list[str]) -> str:
    return (f"{config.get('mmoe_experts', 2)} whole networks (experts) shared by all tasks; "
            "each task's gate mixes their outputs")


@register_family("mmoe", describe=_describe, structure=_structure)
def mmoe(config: dict[str, Any], *, experts: Annotated[int, Ge(1)] = 2,
         gate: Literal["flat", "pooled"] = "flat") -> ExpertsModel:
    """``experts`` whole-backbone experts shared by all tasks; a gate per task reading the input
    (``flat``: every pixel, as LibMTL; ``pooled``: a 4 x 4 grid of channel means)."""
    return build_experts(config, shared=experts, specific=0, levels=1, gate=gate, shared_gate=True)
