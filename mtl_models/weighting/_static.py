"""Static task weights: ``L = sum_t w_t L_t`` with fixed ``w`` (seed 000: 0.2 for each of 5 tasks)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from ..tasks import TaskSpec
from ._base import LossWeighting, register_weighting, stack_losses


@register_weighting("static")
class StaticWeighting(LossWeighting):
    """Weights ``{task: w}`` (config key ``loss_weights``, which the space sets: searched on
    the simplex, equal or given), default ``1/T`` each.

    Weights for tasks the model does not have (a single-task baseline) are ignored
    and the rest renormalised to sum to 1, as seed 000 recommends against summed
    gradients blowing up. ``normalise: false`` (config key ``static_normalise``, not
    searched) takes the weights as given: the joint single-task baselines (family
    ``columns``) sum their columns' losses with weight 1 each, so every column is
    trained at the loss scale of a single-task network (which matters under SGD).
    """

    config_keys = {"weights": "loss_weights"}

    def __init__(
        self, tasks: Sequence[TaskSpec], *, weights: Mapping[str, float] | None = None, normalise: Optional[bool] = None
    ) -> None:
        super().__init__(tasks)
        given = weights or {}
        raw = [float(given.get(t, 1.0)) for t in self.task_names]
        total = sum(raw)
        if total <= 0:
            raise ValueError(f"loss_weights must have a positive sum, got {given}.")
        scale = 1.0 if normalise is False else total
        self.register_buffer("w", torch.tensor([r / scale for r in raw]))

    def combine(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        return (self.w * stack_losses(losses, self.task_names)).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.w.tolist()))
