"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

Each task has a learned log-variance ``s_t = log sigma_t^2``; the total loss is
``sum_t c_t exp(-s_t) L_t + s_t / 2`` with ``c_t = 1/2`` for regression-like tasks
(Gaussian likelihood) and ``c_t = 1`` for classification-like ones (the paper's
eqs. 7 and 10). At the optimum ``c_t exp(-s_t) = 1 / (2 L_t)``: a task's weight falls
as its loss (its homoscedastic uncertainty) grows.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..tasks import TaskSpec
from ._base import LossWeighting, register_weighting, stack_losses

_REGRESSION_KINDS = ("regression", "dense_regression")


@register_weighting("uncertainty")
class UncertaintyWeighting(LossWeighting):
    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(tasks)
        self.register_buffer("c", torch.tensor([0.5 if t.kind in _REGRESSION_KINDS else 1.0 for t in self.tasks]))
        self.log_var = nn.Parameter(torch.zeros(len(self.task_names)))

    def combine(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        stacked = stack_losses(losses, self.task_names)
        return (self.c * torch.exp(-self.log_var) * stacked + 0.5 * self.log_var).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, (self.c * torch.exp(-self.log_var.detach())).tolist()))
