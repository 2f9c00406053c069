"""Hard parameter sharing as a branching tree of backbone stages.

The hard split at stage ``k`` (seed 000/002; Misra et al. 2016, Fig. 1) shares stages
``0..k-1`` between all tasks and gives every task its own copy of stages ``k..n-1``.
Per-task split points and grouped branches are the same structure with other
partitions, so one model class serves all of them.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from torch import Tensor, nn

from ..tasks import TaskSpec
from ._base import (
    MultiTaskModel,
    backbone_copies,
    build_heads,
    register_family,
    tasks_from_config,
)

Partition = list[tuple[str, ...]]


def split_point_partitions(task_names: Sequence[str], num_stages: int, split_point: int) -> list[Partition]:
    """Per stage, the groups of tasks sharing one copy of it, for a single split point."""
    names = tuple(task_names)
    return [[names] if s < split_point else [(t,) for t in names] for s in range(num_stages)]


class BranchedModel(MultiTaskModel):
    """Backbone stages arranged as a tree: stage ``s`` has one copy per group of ``partitions[s]``.

    Each partition must refine the one before it (a group never rejoins another),
    which makes the structure a tree rooted at the input.
    """

    def __init__(
        self,
        tasks: list[TaskSpec],
        input_spec: dict[str, Any],
        copies: list[list],  # copies[g][s]: Stage s of the g-th independent backbone build
        partitions: list[Partition],
        heads: nn.ModuleDict,
    ) -> None:
        super().__init__(tasks, input_spec)
        names = self.task_names
        if len(partitions) != len(copies[0]):
            raise ValueError(f"{len(partitions)} partitions given for {len(copies[0])} stages.")
        self.partitions = [[tuple(g) for g in part] for part in partitions]
        parents: list[list[int]] = []
        previous: Partition = [tuple(names)]
        for s, part in enumerate(self.partitions):
            covered = sorted(t for g in part for t in g)
            if covered != sorted(names):
                raise ValueError(f"Stage {s}: groups {part} must cover each task exactly once: {names}.")
            parents.append([_parent_index(previous, g, s) for g in part])
            previous = part
        self.parents = parents
        self.blocks = nn.ModuleList(
            nn.ModuleList(copies[g][s].module for g in range(len(part))) for s, part in enumerate(self.partitions)
        )
        last = self.partitions[-1] if self.partitions else [tuple(names)]
        self.task_group = [next(i for i, g in enumerate(last) if t in g) for t in names]
        self.heads = heads

    def features(self, x: Tensor) -> list[Tensor]:
        feats = [x]
        for parents, blocks in zip(self.parents, self.blocks):
            feats = [block(feats[p]) for p, block in zip(parents, blocks)]
        return feats

    def predict(self, x: Tensor) -> dict[str, Tensor]:
        feats = self.features(x)
        return {t: self.heads[t](feats[g]) for t, g in zip(self.task_names, self.task_group)}

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters of the deepest stage all tasks share (GradNorm's ``W``)."""
        shared = [s for s, part in enumerate(self.partitions) if len(part) == 1 and len(self.task_names) > 1]
        return list(self.blocks[shared[-1]].parameters()) if shared else []


def _parent_index(previous: Partition, group: tuple[str, ...], stage: int) -> int:
    for i, parent in enumerate(previous):
        if set(group) <= set(parent):
            return i
    raise ValueError(
        f"Stage {stage}: group {list(group)} spans several branches of the stage before; "
        "branches may split but never merge."
    )


def build_branched(
    config: dict[str, Any], tasks: list[TaskSpec], make_partitions: Callable[[int], list[Partition]]
) -> BranchedModel:
    """Build a tree model; ``make_partitions(num_stages)`` gives its per-stage task groups."""
    copies = backbone_copies(config, 1)
    partitions = make_partitions(len(copies[0]))
    copies += backbone_copies(config, max(len(p) for p in partitions) - 1)
    heads = build_heads(config, tasks, copies[0][-1].out_channels)
    return BranchedModel(tasks, config["input"], copies, partitions, heads)


@register_family("hard_split")
def hard_split(config: dict[str, Any]) -> BranchedModel:
    """Stages before ``config['split_point']`` shared, a copy of the rest per task."""
    tasks = tasks_from_config(config)
    k = int(config["split_point"])

    def partitions(num_stages: int) -> list[Partition]:
        if not 0 <= k <= num_stages:
            raise ValueError(f"split_point must be in [0, {num_stages}] for this backbone, got {k}.")
        return split_point_partitions([t.name for t in tasks], num_stages, k)

    return build_branched(config, tasks, partitions)


@register_family("single_task")
def single_task(config: dict[str, Any]) -> BranchedModel:
    """The single-task baseline: the whole backbone and a head for ``config['task']`` only."""
    tasks = [t for t in tasks_from_config(config) if t.name == config["task"]]
    if not tasks:
        raise ValueError(f"single_task: task {config['task']!r} is not among the configured tasks.")
    return build_branched(config, tasks, lambda n: [[(tasks[0].name,)]] * n)
