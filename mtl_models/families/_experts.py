"""Mixture-of-experts sharing: MMoE (Ma et al., KDD 2018) and CGC/PLE (Tang et al., RecSys
2020), built from the backbone's stages in the layout of LibMTL's ``architecture/MMoE.py``,
``CGC.py`` and ``PLE.py``.

An *expert* is a copy of backbone stages; a *gate* is ``softmax(W flatten(h) + b)`` over
the experts it mixes (LibMTL's ``nn.Sequential(nn.Linear(input_size, n), nn.Softmax(-1))``
on the flattened input), and its task's representation is the gate-weighted sum of their
outputs, ``sum_e g_e(h) E_e(h)`` (LibMTL's ``einsum('ij..., ji -> j...')``).

The backbone's stages are cut into ``levels`` consecutive groups (extraction levels; the
earlier ones take one stage more where they do not divide evenly). At level ``j`` there
are ``shared`` experts every task may use and ``specific`` experts per task; expert ``e``
at level ``j`` is level ``j``'s stages of the ``e``-th independent backbone build (as
LibMTL cuts each expert's encoder into its ResNet stages). Task ``k``'s gate at level
``j`` reads task ``k``'s representation from level ``j - 1`` (the input at level 0) and
mixes its own experts and the shared ones (PLE eq. 4-5; shared first, as LibMTL stacks
them). Each task's head reads its representation after the last level.

Where the shared experts read from (``shared_gate``):

- ``True`` (the paper, Tang et al. sec. 4.3): a shared gate at every level but the last
  mixes *all* the level's experts (shared, then every task's specific ones, in task order)
  from the shared representation, which the next level's shared experts read.
- ``False`` (LibMTL's ``PLE``): no shared gate; at level ``j`` the shared experts read each
  task's own representation, so they run once per task (once at level 0, where every
  task's input is the same tensor: only batch-norm running statistics would differ, LibMTL
  updating them once per task).

With one level both are CGC (no shared gate after the last level); with one level and no
specific experts, MMoE. Gates read the flattened features (``gate: flat``, LibMTL), or
``pooled``: each channel averaged over a grid of at most 4 x 4 cells (size-independent
gates for large inputs; vector features as they are).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tasks import TaskSpec
from ._base import MultiTaskModel, backbone_copies, build_heads, tasks_from_config

POOLED_GRID = 4


@dataclass(frozen=True)
class AtMostStages:
    """``Annotated`` bound of a family's integer parameter: at most the backbone's number of
    stages (checked against the backbone where the experiment file is read)."""


def level_stages(num_stages: int, levels: int) -> list[list[int]]:
    """The stages of each extraction level: ``num_stages`` cut into ``levels`` consecutive
    groups, the first ``num_stages % levels`` one stage longer (``numpy.array_split``'s rule)."""
    if not 1 <= levels <= num_stages:
        raise ValueError(f"levels {levels}: must be 1..{num_stages}, one or more stages per level of this backbone.")
    size, extra = divmod(num_stages, levels)
    out, start = [], 0
    for j in range(levels):
        stop = start + size + (1 if j < extra else 0)
        out.append(list(range(start, stop)))
        start = stop
    return out


class Gate(nn.Module):
    """``(B, C, H, W)`` or ``(B, C)`` -> ``(B, experts)`` softmax weights: a linear layer on the
    flattened features (``pool``: after average pooling to that grid)."""

    def __init__(self, features: int, experts: int, pool: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(features, experts)

    def forward(self, x: Tensor) -> Tensor:
        if self.pool is not None and x.dim() == 4:
            x = F.adaptive_avg_pool2d(x, self.pool)
        return torch.softmax(self.linear(torch.flatten(x, 1)), dim=-1)


def mix(weights: Tensor, outputs: list[Tensor]) -> Tensor:
    """``sum_e weights[:, e] * outputs[e]``: ``weights (B, E)``, each output ``(B, ...)``."""
    return torch.einsum("eb...,be->b...", torch.stack(outputs), weights)


class Level(nn.Module):
    """One extraction level: ``shared`` experts, ``specific`` experts per task, a gate per task
    and, where ``shared_gate``, the shared module's gate over all the level's experts."""

    def __init__(
        self,
        shared: list[nn.Module],
        specific: dict[str, list[nn.Module]],
        gates: dict[str, Gate],
        shared_gate: Gate | None,
    ) -> None:
        super().__init__()
        self.shared = nn.ModuleList(shared)
        self.specific = nn.ModuleDict({t: nn.ModuleList(experts) for t, experts in specific.items()})
        self.gates = nn.ModuleDict(gates)
        self.shared_gate = shared_gate


class ExpertsModel(MultiTaskModel):
    """MMoE, CGC and PLE (module docstring): ``levels`` of shared and task-specific experts
    with softmax gates, then a head per task."""

    def __init__(
        self,
        tasks: list[TaskSpec],
        input_spec: dict[str, Any],
        columns: list[list],  # columns[c][s]: stage s of the c-th independent backbone build
        *,
        shared: int,
        specific: int,
        levels: int,
        gate: str,
        shared_gate: bool,
        heads: nn.ModuleDict,
    ) -> None:
        super().__init__(tasks, input_spec)
        _check_experts(shared, specific)
        if gate not in ("flat", "pooled"):
            raise ValueError(f"gate {gate!r}: must be 'flat' or 'pooled'.")
        names = self.task_names
        groups = level_stages(len(columns[0]), levels)
        self.shared_gate = bool(shared_gate)
        sizes = _level_input_shapes(columns[0], groups, input_spec)
        built = []
        for j, stages in enumerate(groups):
            experts = [nn.Sequential(*(column[s].module for s in stages)) for column in columns]
            own = {t: experts[shared + i * specific: shared + (i + 1) * specific] for i, t in enumerate(names)}
            features, pool = _gate_features(sizes[j], gate)
            gates = {t: Gate(features, shared + specific, pool) for t in names}
            last = j == len(groups) - 1
            mixer = Gate(features, shared + len(names) * specific, pool) if self.shared_gate and not last else None
            built.append(Level(experts[:shared], own, gates, mixer))
        self.levels = nn.ModuleList(built)
        self.heads = heads

    def predict(self, x: Tensor) -> dict[str, Tensor]:
        names = self.task_names
        reps: dict[str, Tensor] = {t: x for t in names}
        shared_rep = x
        for level in self.levels:
            specific = {t: [e(reps[t]) for e in level.specific[t]] for t in names}
            if self.shared_gate:
                common = [e(shared_rep) for e in level.shared]
                shared_out = {t: common for t in names}
            else:  # LibMTL: the shared experts read each task's own representation
                seen: dict[int, list[Tensor]] = {}
                shared_out = {t: seen.setdefault(id(reps[t]), [e(reps[t]) for e in level.shared]) for t in names}
            new = {t: mix(level.gates[t](reps[t]), shared_out[t] + specific[t]) for t in names}
            if level.shared_gate is not None:
                everything = shared_out[names[0]] + [o for t in names for o in specific[t]]
                shared_rep = mix(level.shared_gate(shared_rep), everything)
            reps = new
        return {t: self.heads[t](reps[t]) for t in names}

    def shared_parameters(self) -> list[nn.Parameter]:
        """GradNorm's ``W`` (the last shared layer): the last stage of every shared expert of
        the last level, which every task's gate mixes (LibMTL's ``get_share_params`` gives all
        shared experts)."""
        return [p for expert in self.levels[-1].shared for p in expert[-1].parameters()]

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Per task, what its output reaches, level by level: its gate and specific experts,
        the shared experts and what their input reaches (the shared representation, which
        reaches every expert and gate before it; LibMTL's layout: the task's own), and its head."""
        names = self.task_names
        reach: dict[str, set[int]] = {t: set() for t in names}
        shared_reach: set[int] = set()

        def ids(module: nn.Module | None) -> set[int]:
            return set() if module is None else {id(p) for p in module.parameters()}

        for level in self.levels:
            shared_ids = ids(level.shared)
            new = {}
            for t in names:
                upstream = shared_reach if self.shared_gate else reach[t]
                new[t] = reach[t] | ids(level.gates[t]) | ids(level.specific[t]) | shared_ids | upstream
            if level.shared_gate is not None:
                shared_reach = shared_reach | shared_ids | ids(level.shared_gate) | ids(level.specific)
                shared_reach |= set().union(*reach.values())  # the specific experts read the tasks' representations
            reach = new
        order = list(self.parameters())
        reach = {t: reach[t] | ids(self.heads[t]) for t in names}
        return {t: [p for p in order if id(p) in reach[t]] for t in names}


def _check_experts(shared: int, specific: int) -> None:
    if shared < 0 or specific < 0 or shared + specific < 1:
        raise ValueError(f"experts: {shared} shared and {specific} per task; a task's gate needs one or more.")


def _level_input_shapes(column: list, groups: list[list[int]], input_spec: dict[str, Any]) -> list[tuple[int, ...]]:
    """The per-image shape each level's gate reads (``(C, H, W)`` or ``(C,)``), from one dry
    run of a backbone copy in eval mode (nothing it holds changes)."""
    x = torch.zeros(1, int(input_spec["channels"]), int(input_spec["height"]), int(input_spec["width"]))
    modules = [stage.module for stage in column]
    modes = [m.training for m in modules]
    shapes = []
    with torch.no_grad():
        for stages in groups:
            shapes.append(tuple(x.shape[1:]))
            for s in stages:
                modules[s].eval()
                x = modules[s](x)
    for m, mode in zip(modules, modes):
        m.train(mode)
    return shapes


def _gate_features(shape: tuple[int, ...], gate: str) -> tuple[int, tuple[int, int] | None]:
    """A gate's input features for one image of ``shape``, and its pooling grid (``pooled``)."""
    if gate == "pooled" and len(shape) == 3:
        grid = (min(POOLED_GRID, shape[1]), min(POOLED_GRID, shape[2]))
        return shape[0] * grid[0] * grid[1], grid
    return int(torch.Size(shape).numel()), None


def build_experts(config: dict[str, Any], *, shared: int, specific: int, levels: int, gate: str,
                  shared_gate: bool) -> ExpertsModel:
    """An :class:`ExpertsModel` of ``config``'s backbone, tasks and heads: one independent
    backbone build per expert column (``shared + T * specific`` of them)."""
    tasks = tasks_from_config(config)
    _check_experts(shared, specific)
    columns = backbone_copies(config, shared + len(tasks) * specific)
    heads = build_heads(config, tasks, columns[0][-1])
    return ExpertsModel(tasks, config["input"], columns, shared=shared, specific=specific, levels=levels, gate=gate,
                        shared_gate=shared_gate, heads=heads)
