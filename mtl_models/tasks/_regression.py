"""Regression of one or more values per image: MSE or L1 loss, MAE/RMSE; NaN means missing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import MetricState, TaskKind, TaskSpec, masked_mean, register_task_kind


class ErrorState(MetricState):
    """MAE and RMSE over the non-NaN entries of any shape."""

    def __init__(self, device: torch.device) -> None:
        self.abs_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.sq_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.count = torch.zeros((), device=device, dtype=torch.float64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        pred, target = _align(pred, target)
        valid = ~torch.isnan(target)
        err = torch.where(valid, pred.double() - target.nan_to_num().double(), 0.0)
        self.abs_sum += err.abs().sum()
        self.sq_sum += (err * err).sum()
        self.count += valid.sum()

    def compute(self) -> dict[str, float]:
        n = float(self.count)
        if not n:
            return {"mae": float("nan"), "rmse": float("nan")}
        return {"mae": float(self.abs_sum) / n, "rmse": (float(self.sq_sum) / n) ** 0.5}


def _align(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Targets ``(N,)`` for one value, or ``(N, H, W)`` for a one-channel map, gain the channel dim."""
    if target.dim() == pred.dim() - 1:
        target = target.unsqueeze(1)
    return pred, target


@register_task_kind
class Regression(TaskKind):
    name = "regression"
    losses = ("mse", "l1", "smooth_l1")
    metrics = {"mae": False, "rmse": False}
    default_loss = "mse"
    default_metric = "mae"
    target_dtype = torch.float32

    def validate(self, spec: TaskSpec) -> None:
        super().validate(spec)
        if spec.classes is not None and spec.classes < 1:
            raise ValueError(
                f"Task {spec.name!r}: 'classes' (values regressed) must be >= 1, got {spec.classes!r}."
            )

    def output_dim(self, spec: TaskSpec) -> int:
        return int(spec.classes or 1)

    def valid_mask(self, target: Tensor) -> Tensor:
        return ~torch.isnan(target)

    def loss(self, spec: TaskSpec, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        pred, target = _align(pred.float(), target)
        valid = self.valid_mask(target)
        fn = {"mse": F.mse_loss, "l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss}[spec.loss_name]
        per_entry = fn(pred, target.nan_to_num(), reduction="none")
        return masked_mean(per_entry, valid)

    def metric_state(self, spec: TaskSpec, device: torch.device) -> MetricState:
        return ErrorState(device)
