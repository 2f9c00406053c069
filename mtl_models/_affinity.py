"""Inter-task affinity by lookahead (TAG: Fifty, Amid, Zhao, Yu, Anil, Finn, NeurIPS 2021),
measured per backbone stage, and the task groupings and branch trees it implies.

One network with every stage shared by all tasks (a hard split after the last stage)
trains for a short budget. Every ``every`` steps, for each stage ``s`` and task ``i``,
the shared parameters of stage ``s`` take a lookahead step on task ``i``'s loss alone,
``theta_s' = theta_s - lr * grad_{theta_s} L_i`` (TAG's eq. 3, with the training
learning rate), and every task ``j``'s loss on the same batch is measured again:

    Z^s_{i->j} = 1 - L_j(theta_s') / L_j(theta_s)

(positive: task ``i``'s update at stage ``s`` helps task ``j``). The matrices are
averaged over the measured steps. Tasks whose updates help each other are worth
sharing that stage; tasks that hurt each other are worth separating there.

Grouping (TAG's network selection, for partitions): a grouping's score is, summed over
tasks, the mean affinity onto the task from the others in its group (0 alone). Per
stage, from the input on, the tree keeps a group together unless splitting it raises
the score at that stage; groups only split as stages get deeper, so the result is a
valid branch tree (``branches`` of a hard split).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor
from torch.func import functional_call

from ._train import Trainer, resolve_device, seed_everything
from .data import MultiTaskData
from .families import BranchedModel, build_model


@dataclass
class AffinityResult:
    """Per stage the ``(T, T)`` affinity ``Z[i][j]`` (task ``i``'s update onto task ``j``), the
    stage names, the tasks, how many steps were measured, and the proposed trees."""

    tasks: list[str]
    stages: list[str]
    affinity: list[list[list[float]]]  # [stage][i][j]
    steps: int
    epochs: int
    trees: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "stages": self.stages, "affinity": self.affinity, "steps": self.steps,
                "epochs": self.epochs, "trees": self.trees}


def measure_affinity(config: dict[str, Any], data: MultiTaskData, epochs: int = 2, every: int = 5) -> AffinityResult:
    """Train ``config``'s backbone with every stage shared for ``epochs`` and measure the
    per-stage lookahead affinity every ``every`` steps (see the module docstring).

    ``config`` is a trial config (tasks, backbone, input, optimiser, batch size, seed);
    the family and tree are replaced by the fully shared network.
    """
    names = [t["name"] for t in config["tasks"]]
    joint = {**config, "family": "hard_split", "tree": "single", "branches": None, "split_points": None,
             "task_groups": None, "loss_weighting": "static", "optimization": "joint", "epochs": epochs}
    joint["split_point"] = len(build_model({**joint, "split_point": 0}).blocks)  # every stage shared
    seed_everything(int(joint.get("seed", 0)))
    model = build_model(joint)
    assert isinstance(model, BranchedModel)
    trainer = Trainer(model, data, joint, device=resolve_device(joint.get("device")))
    stage_params = [dict(model.blocks[s][0].named_parameters(prefix=f"blocks.{s}.0")) for s in range(len(model.blocks))]
    sums = torch.zeros(len(stage_params), len(names), len(names), dtype=torch.float64)
    measured = 0
    step = 0
    lr = float(joint["lr"])
    for _ in range(epochs):
        model.train()
        for x, targets in trainer.feeds["train"].batches(trainer.batch_size, shuffle=True, generator=trainer.generator,
                                                         augment=True):
            if x.shape[0] < 2:
                continue
            if step % every == 0:
                sums += _lookahead(trainer, stage_params, x, targets, lr)
                measured += 1
            trainer.optimizer.zero_grad(set_to_none=True)
            losses = trainer.losses(trainer.forward(x), targets)
            trainer.weighting.combine(losses, model).backward()
            trainer.optimizer.step()
            trainer.scheduler.step()
            step += 1
    mean = (sums / max(measured, 1)).tolist()
    stages = [f"stage{s}" for s in range(len(stage_params))]
    result = AffinityResult(names, stages, mean, measured, epochs)
    result.trees = propose_trees(mean, names)
    return result


def _lookahead(trainer: Trainer, stage_params: list[dict[str, Tensor]], x: Tensor, targets: dict[str, Tensor],
               lr: float) -> Tensor:
    """``Z[s, i, j]`` on one batch, in eval-free training mode (batch norm as in training,
    its running statistics left as they were)."""
    model = trainer.model
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    names = [t.name for t in trainer.tasks]
    base = trainer.losses(trainer.forward(x), targets)
    flat = [p for params in stage_params for p in params.values()]
    grads = {}
    for i, name in enumerate(names):
        g = torch.autograd.grad(base[name], flat, retain_graph=True, allow_unused=True)
        grads[name] = [torch.zeros_like(p) if gi is None else gi for p, gi in zip(flat, g)]
    before = torch.tensor([base[n].item() for n in names], dtype=torch.float64)
    out = torch.zeros(len(stage_params), len(names), len(names), dtype=torch.float64)
    with torch.no_grad():
        offset = 0
        for s, params in enumerate(stage_params):
            keys = list(params)
            for i, name in enumerate(names):
                moved = {k: p - lr * grads[name][offset + n] for n, (k, p) in enumerate(params.items())}
                with trainer._autocast():
                    outputs = functional_call(model, moved, (trainer._input(x),), strict=False)
                after = trainer.losses({t: [outputs[t]] for t in names}, targets)
                out[s, i] = torch.tensor([1.0 - after[n].item() / max(before[j].item(), 1e-12)
                                          for j, n in enumerate(names)], dtype=torch.float64)
            offset += len(keys)
    for k, v in model.named_buffers():  # batch norm's running statistics: as before the lookahead
        v.copy_(buffers[k])
    return out


def partitions(items: Sequence[str]) -> Iterator[list[tuple[str, ...]]]:
    """Every partition of ``items`` into non-empty groups (Bell(T) of them; T <= 8 here)."""
    items = list(items)
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for smaller in partitions(rest):
        for i in range(len(smaller)):
            yield smaller[:i] + [(first, *smaller[i])] + smaller[i + 1:]
        yield [(first,)] + smaller


def grouping_score(affinity: Sequence[Sequence[float]], names: Sequence[str], groups: Sequence[Sequence[str]]) -> float:
    """Summed over tasks, the mean affinity onto a task from the others in its group (0 alone)."""
    index = {n: k for k, n in enumerate(names)}
    total = 0.0
    for group in groups:
        for j in group:
            others = [i for i in group if i != j]
            if others:
                total += sum(affinity[index[i]][index[j]] for i in others) / len(others)
    return total


def best_refinement(affinity: Sequence[Sequence[float]], names: Sequence[str], parent: Sequence[Sequence[str]],
                    max_groups: int | None = None) -> list[tuple[str, ...]]:
    """The highest-scoring refinement of ``parent`` (each group split or kept), ties to fewer groups."""
    options = [list(partitions(group)) for group in parent]
    best, best_key = None, None
    for choice in itertools.product(*options):
        groups = [g for part in choice for g in part]
        if max_groups is not None and len(groups) > max_groups:
            continue
        key = (round(grouping_score(affinity, names, groups), 12), -len(groups))
        if best_key is None or key > best_key:
            best, best_key = groups, key
    return [tuple(g) for g in (best or parent)]


def propose_trees(affinity: Sequence[Sequence[Sequence[float]]], names: Sequence[str],
                  max_groups: int | None = None) -> list[dict[str, Any]]:
    """Branch trees from the per-stage affinity (``affinity[s][i][j]``): the per-stage tree
    (every stage's best refinement of the one before) and, for each number of groups, the
    best grouping by the mean affinity over stages, branching at the first stage where it
    scores above keeping every task together. Each: ``{"name", "branches", "score"}``,
    distinct trees only, best score first."""
    names = list(names)
    n = len(affinity)
    trees: list[dict[str, Any]] = []
    tree, parent = [], [tuple(names)]
    for s in range(n):
        parent = best_refinement(affinity[s], names, parent, max_groups)
        tree.append(parent)
    trees.append({"name": "per-stage", "branches": tree})
    mean = [[sum(affinity[s][i][j] for s in range(n)) / n for j in range(len(names))] for i in range(len(names))]
    for k in range(2, len(names) + 1):
        if max_groups is not None and k > max_groups:
            break
        candidates = [p for p in partitions(names) if len(p) == k]
        groups = max(candidates, key=lambda p: grouping_score(mean, names, p))
        together = [tuple(names)]
        start = next((s for s in range(n) if grouping_score(affinity[s], names, groups) > grouping_score(affinity[s], names, together)), n - 1)
        trees.append({"name": f"{k} groups", "branches": [together] * start + [groups] * (n - start)})
    out, seen = [], set()
    for t in trees:
        key = tuple(tuple(sorted(tuple(sorted(g)) for g in part)) for part in t["branches"])
        if key in seen:
            continue
        seen.add(key)
        branches = [[list(g) for g in part] for part in t["branches"]]
        score = sum(grouping_score(affinity[s], names, part) for s, part in enumerate(t["branches"]))
        out.append({"name": t["name"], "branches": branches, "score": score})
    return sorted(out, key=lambda t: -t["score"])
