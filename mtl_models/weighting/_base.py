"""The narrow base of loss-weighting schemes, and their registry."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from .._registry import Registry


class LossWeighting(nn.Module):
    """Turns the per-task losses of a step into the total loss ``sum_t w_t L_t``.

    A scheme may hold learnable parameters (returned by ``param_groups``), react to
    the end of an epoch (``end_epoch``), or need the model (``combine`` gets it).
    """

    def __init__(self, task_names: list[str], config: dict[str, Any]) -> None:
        super().__init__()
        self.task_names = list(task_names)

    def combine(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        """The current weight of each task (for the results table and the report)."""
        raise NotImplementedError

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        """Called with each task's mean training loss after every epoch."""

    def param_groups(self) -> list[dict[str, Any]]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr_scale": 1.0, "weight_decay": 0.0}] if params else []


WeightingFactory = Callable[[list[str], dict[str, Any]], LossWeighting]

_SCHEMES: Registry[WeightingFactory] = Registry("loss weighting")


def register_weighting(name: str, *, replace: bool = False) -> Callable[[type[LossWeighting]], type[LossWeighting]]:
    return _SCHEMES.register(name, replace=replace)


def available_weightings() -> list[str]:
    return _SCHEMES.names()


def build_weighting(task_names: list[str], config: dict[str, Any]) -> LossWeighting:
    """Build the scheme ``config['loss_weighting']`` (default ``static``) for these tasks."""
    return _SCHEMES.get(config.get("loss_weighting") or "static")(task_names, config)


def stack_losses(losses: dict[str, Tensor], task_names: list[str]) -> Tensor:
    return torch.stack([losses[t] for t in task_names])
