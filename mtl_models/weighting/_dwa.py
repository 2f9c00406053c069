"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, eq. 7).

``lambda_t(e) = T exp(w_t(e-1) / temp) / sum_i exp(w_i(e-1) / temp)`` with
``w_t(e-1) = L_t(e-1) / L_t(e-2)``, the ratio of the task's last two epoch-mean
losses: a task whose loss falls more slowly gets more weight. The first two epochs
use equal weights. Here the weights are divided by ``T`` so that they sum to 1, the
convention of the static scheme (seed 000); only their ratios matter to the paper.
"""
from __future__ import annotations

from typing import Annotated, Sequence

import torch
from annotated_types import Gt
from torch import Tensor, nn

from ..tasks import TaskSpec
from ._base import LossWeighting, register_weighting, stack_losses


@register_weighting("dwa")
class DynamicWeightAverage(LossWeighting):
    """``temperature`` (``dwa_temperature``): the paper's ``T`` = 2 softens the weights; a
    large one makes them equal."""

    def __init__(self, tasks: Sequence[TaskSpec], *, temperature: Annotated[float, Gt(0)] = 2.0) -> None:
        super().__init__(tasks)
        self.temperature = float(temperature)
        n = len(self.task_names)
        self.register_buffer("w", torch.full((n,), 1.0 / n))
        self.register_buffer("history", torch.full((2, n), float("nan")))  # epoch means, older first

    def combine(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        return (self.w * stack_losses(losses, self.task_names)).sum()

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        latest = torch.tensor([epoch_losses[t] for t in self.task_names], dtype=self.history.dtype)
        self.history = torch.stack([self.history[1], latest.to(self.history.device)])
        if torch.isnan(self.history).any():
            return
        ratio = self.history[1] / self.history[0].clamp(min=1e-12)
        self.w = torch.softmax(ratio / self.temperature, dim=0)

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.w.tolist()))
