"""The single-task baselines as one model: every task's single-task network side by side.

A hard split that shares nothing (``split_point: 0``) is the single-task networks in one
model (Misra et al. 2016, Fig. 1: the split before the first layer). Trained with the
per-task losses summed at weight 1 (``loss_weighting: static``, ``static_normalise:
false``), each column's gradient is its own task's, exactly as in a network trained
for that task alone: the optimisers here (SGD, Adam, AdamW) update every parameter from
its own gradient, so one pass over the data trains all ``T`` single-task networks.

Column ``t`` is built exactly as the single-task network of ``t`` with the config's
seed is (``torch.manual_seed(seed)`` before each column, the global generator left as
it was), so its initial weights do not depend on the other tasks; with the batches the
trainer draws from its own seeded generator (every row, a missing label masked in that
task's loss only) it is the network a ``single_task`` trial of that seed trains.
:meth:`ColumnsModel.column` is column ``t`` as that single-task network (sharing the
modules), whose ``state_dict`` a ``single_task`` model loads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..tasks import TaskSpec
from ._base import register_family, tasks_from_config
from ._hard_split import BranchedModel, single_task


@dataclass(frozen=True)
class _Block:
    module: nn.Module


class ColumnsModel(BranchedModel):
    """``T`` single-task networks as a :class:`BranchedModel` whose every stage has one copy per
    task (the layout, and so the ``state_dict`` keys, of a ``split_point: 0`` hard split)."""

    def column(self, task: str) -> BranchedModel:
        """Task ``task``'s column as a single-task network (the same modules, not copies)."""
        g = self.task_names.index(task)
        spec = self.tasks[g]
        copies = [[_Block(blocks[g]) for blocks in self.blocks]]
        input_spec = {"channels": self.input_mean.shape[1], "mean": self.input_mean.flatten().tolist(),
                      "std": self.input_std.flatten().tolist()}
        return BranchedModel([spec], input_spec, copies, [[(task,)]] * len(self.blocks),
                             nn.ModuleDict({task: self.heads[task]}))


@register_family("columns")
def columns(config: dict[str, Any]) -> ColumnsModel:
    """Every task's single-task network, each initialised as ``single_task`` with ``config['seed']``."""
    tasks: list[TaskSpec] = tasks_from_config(config)
    seed = int(config.get("seed", 0))
    singles = []
    for spec in tasks:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            singles.append(single_task({**config, "family": "single_task", "task": spec.name}))
    copies = [[_Block(blocks[0]) for blocks in single.blocks] for single in singles]
    num_stages = len(copies[0])
    partitions = [[(t.name,) for t in tasks] for _ in range(num_stages)]
    heads = nn.ModuleDict({spec.name: single.heads[spec.name] for spec, single in zip(tasks, singles)})
    return ColumnsModel(tasks, config["input"], copies, partitions, heads)
