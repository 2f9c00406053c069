"""The ensemble baseline of the cross-stitch paper, parameter-matched.

Misra et al. (2016, sec. 5) compare a cross-stitch network of ``T`` columns with an
ensemble of single-task networks holding as many parameters. Here each task is
predicted by ``ensemble_size`` independently trained single-task networks (default
``T``, so a task's prediction draws on as many backbone parameters as it does in the
``T``-column cross-stitch network). Members are trained on their own losses, never
on the averaged output; at inference the task kind combines them (classification:
the mean of the members' class probabilities). A search trains the members as its
single-task baseline trials (one seed each) and composes the ensemble from them.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..tasks import TaskSpec
from ._base import MultiTaskModel, register_family, tasks_from_config
from ._hard_split import single_task


class EnsembleModel(MultiTaskModel):
    """``members[task]``: single-task models whose outputs for ``task`` are combined."""

    def __init__(
        self, tasks: list[TaskSpec], input_spec: dict[str, Any], members: dict[str, list[MultiTaskModel]]
    ) -> None:
        super().__init__(tasks, input_spec)
        self.members = nn.ModuleDict({t: nn.ModuleList(ms) for t, ms in members.items()})

    def task_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Each task's members are its own: nothing is shared."""
        return {t: list(self.members[t].parameters()) for t in self.task_names}

    def member_outputs(self, x: Tensor) -> dict[str, list[Tensor]]:
        return {t: [member(x)[t] for member in self.members[t]] for t in self.task_names}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        outputs = self.member_outputs(x)
        return {spec.name: spec.kind_impl.combine(outputs[spec.name]) for spec in self.tasks}


@register_family("ensemble")
def ensemble(config: dict[str, Any]) -> EnsembleModel:
    tasks = tasks_from_config(config)
    size = int(config.get("ensemble_size") or len(tasks))
    members = {
        spec.name: [single_task({**config, "family": "single_task", "task": spec.name}) for _ in range(size)]
        for spec in tasks
    }
    return EnsembleModel(tasks, config["input"], members)
