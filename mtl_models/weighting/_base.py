"""The narrow base of loss-weighting schemes, and their registry."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn


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

_SCHEMES: dict[str, WeightingFactory] = {}


def register_weighting(name: str) -> Callable[[type[LossWeighting]], type[LossWeighting]]:
    def decorator(cls: type[LossWeighting]) -> type[LossWeighting]:
        _SCHEMES[name] = cls
        return cls

    return decorator


def available_weightings() -> list[str]:
    return sorted(_SCHEMES)


def build_weighting(task_names: list[str], config: dict[str, Any]) -> LossWeighting:
    """Build the scheme ``config['loss_weighting']`` (default ``static``) for these tasks."""
    name = config.get("loss_weighting") or "static"
    try:
        factory = _SCHEMES[name]
    except KeyError:
        raise ValueError(
            f"Unknown loss_weighting {name!r}; known schemes: {', '.join(available_weightings())}."
        ) from None
    return factory(task_names, config)


def stack_losses(losses: dict[str, Tensor], task_names: list[str]) -> Tensor:
    return torch.stack([losses[t] for t in task_names])
