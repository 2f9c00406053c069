"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

Each task has a learned log-variance ``s_t = log sigma_t^2``; the total loss is
``sum_t c_t exp(-s_t) L_t + s_t / 2`` with ``c_t = 1/2`` for regression-like tasks
(Gaussian likelihood) and ``c_t = 1`` for classification-like ones (the paper's
eqs. 7 and 10). At the optimum ``c_t exp(-s_t) = 1 / (2 L_t)``: a task's weight falls
as its loss (its homoscedastic uncertainty) grows.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._base import LossWeighting, register_weighting, stack_losses

_REGRESSION_KINDS = ("regression", "dense_regression")


@register_weighting("uncertainty")
class UncertaintyWeighting(LossWeighting):
    def __init__(self, task_names: list[str], config: dict[str, Any]) -> None:
        super().__init__(task_names, config)
        kinds = {t["name"]: t["kind"] for t in config.get("tasks", [])}
        self.register_buffer(
            "c", torch.tensor([0.5 if kinds.get(t) in _REGRESSION_KINDS else 1.0 for t in self.task_names])
        )
        self.log_var = nn.Parameter(torch.zeros(len(self.task_names)))

    def combine(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        stacked = stack_losses(losses, self.task_names)
        return (self.c * torch.exp(-self.log_var) * stacked + 0.5 * self.log_var).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, (self.c * torch.exp(-self.log_var.detach())).tolist()))
