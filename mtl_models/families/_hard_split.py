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


def per_task_partitions(task_names: Sequence[str], num_stages: int, split_points: dict[str, int]) -> list[Partition]:
    """Task ``t`` leaves the shared trunk at stage ``split_points[t]`` (seed 000: colour early, style late)."""
    out = []
    for s in range(num_stages):
        trunk = tuple(t for t in task_names if split_points[t] > s)
        out.append(([trunk] if trunk else []) + [(t,) for t in task_names if t not in trunk])
    return out


def grouped_partitions(
    task_names: Sequence[str],
    num_stages: int,
    split_point: int,
    task_groups: dict[str, Any],
    group_split_points: dict[str, int],
) -> list[Partition]:
    """A three-level tree: all tasks share stages ``< split_point``; then each group of
    tasks (``task_groups[t]``) shares a branch up to its own ``group_split_points[g]``
    (at least ``split_point``); then every task has its own stages."""
    out = []
    for s in range(num_stages):
        if s < split_point:
            out.append([tuple(task_names)])
            continue
        part: Partition = []
        seen: set[str] = set()
        for t in task_names:
            group = str(task_groups[t])
            if max(int(group_split_points[group]), split_point) > s:
                if group not in seen:
                    seen.add(group)
                    part.append(tuple(u for u in task_names if str(task_groups[u]) == group))
            else:
                part.append((t,))
        out.append(part)
    return out


def partitions_from_config(config: dict[str, Any], task_names: Sequence[str], num_stages: int) -> list[Partition]:
    """The tree a hard-split config describes, by the first key present:

    ``branches`` (explicit per-stage groups), ``split_points`` (one per task),
    ``task_groups`` + ``group_split_points`` (+ ``split_point`` for the trunk), or a
    single ``split_point``.
    """
    names = list(task_names)
    if config.get("branches") is not None:
        parts = [[tuple(g) for g in part] for part in config["branches"]]
        if len(parts) != num_stages:
            raise ValueError(f"branches: {len(parts)} stages given, the backbone has {num_stages}.")
        return parts
    if config.get("split_points"):
        points = config["split_points"]
        _check_range("split_points", points.values(), num_stages)
        return per_task_partitions(names, num_stages, {t: int(points[t]) for t in names})
    k = int(config.get("split_point", 0))
    _check_range("split_point", [k], num_stages)
    if config.get("task_groups"):
        _check_range("group_split_points", config["group_split_points"].values(), num_stages)
        return grouped_partitions(names, num_stages, k, config["task_groups"], config["group_split_points"])
    return split_point_partitions(names, num_stages, k)


def _check_range(key: str, values: Any, num_stages: int) -> None:
    bad = [v for v in values if not 0 <= int(v) <= num_stages]
    if bad:
        raise ValueError(f"{key}: {bad} outside 0..{num_stages} for this backbone.")


def describe_tree(partitions: list[Partition], stage_names: Sequence[str]) -> str:
    """``conv1-conv2: {a,b,c} | conv3: {a,b} {c} | conv4: {a} {b} {c}``."""
    pieces: list[tuple[list[str], str]] = []
    for name, part in zip(stage_names, partitions):
        text = " ".join("{" + ",".join(g) + "}" for g in part)
        if pieces and pieces[-1][1] == text:
            pieces[-1][0].append(name)
        else:
            pieces.append(([name], text))
    return " | ".join(f"{n[0]}{'-' + n[-1] if len(n) > 1 else ''}: {t}" for n, t in pieces)


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

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Task ``t`` reaches the copy of every stage whose group holds ``t``, and its head."""
        out = {}
        for t in self.task_names:
            params = [
                p
                for part, blocks in zip(self.partitions, self.blocks)
                for group, block in zip(part, blocks)
                if t in group
                for p in block.parameters()
            ]
            out[t] = params + list(self.heads[t].parameters())
        return out


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
    heads = build_heads(config, tasks, copies[0][-1])
    return BranchedModel(tasks, config["input"], copies, partitions, heads)


@register_family("hard_split")
def hard_split(config: dict[str, Any]) -> BranchedModel:
    """A tree of stages: one split point, one per task, grouped branches or explicit branches
    (see :func:`partitions_from_config`)."""
    tasks = tasks_from_config(config)
    names = [t.name for t in tasks]
    return build_branched(config, tasks, lambda num_stages: partitions_from_config(config, names, num_stages))


@register_family("single_task")
def single_task(config: dict[str, Any]) -> BranchedModel:
    """The single-task baseline: the whole backbone and a head for ``config['task']`` only."""
    tasks = [t for t in tasks_from_config(config) if t.name == config["task"]]
    if not tasks:
        raise ValueError(f"single_task: task {config['task']!r} is not among the configured tasks.")
    return build_branched(config, tasks, lambda n: [[(tasks[0].name,)]] * n)
