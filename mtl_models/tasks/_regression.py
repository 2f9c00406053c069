"""Regression of one or more values per image: MSE or L1 loss, MAE/RMSE; NaN means missing.

Metrics are torchmetrics' ``mean_absolute_error`` and ``mean_squared_error(squared=False)``
over every labelled value, in the labels' units.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import MetricState, TaskKind, TaskSpec, masked_mean, register_task_kind


class RegressionState(MetricState):
    """Keeps each batch's predictions and labels on the device (``N x D`` values per split);
    ``compute`` takes torchmetrics' MAE and RMSE over the labelled (non-NaN) entries, once,
    in float64: every labelled value counts once, whichever output it belongs to."""

    def __init__(self) -> None:
        self.preds: list[Tensor] = []
        self.targets: list[Tensor] = []

    def update(self, pred: Tensor, target: Tensor) -> None:
        pred, target = _align(pred.detach(), target.detach())
        self.preds.append(pred)
        self.targets.append(target)

    def compute(self) -> dict[str, float]:
        from torchmetrics.functional import mean_absolute_error, mean_squared_error

        target = torch.cat(self.targets) if self.targets else torch.zeros(0)
        valid = ~torch.isnan(target)
        if not bool(valid.any()):
            return {"mae": float("nan"), "rmse": float("nan")}
        pred, target = torch.cat(self.preds)[valid].double(), target[valid].double()
        return {"mae": float(mean_absolute_error(pred, target)), "rmse": float(mean_squared_error(pred, target, squared=False))}


def target_statistics(target: Tensor, per_value: bool) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of the labelled (non-NaN) ``target`` entries: per regressed
    value, shape ``(1, D)`` (``per_value``), or over all entries, shape ``(1, 1, 1, 1)`` (maps).
    A constant target gets the scale 1."""
    flat = target.reshape(target.shape[0], -1).double() if per_value else target.reshape(-1, 1).double()
    valid = ~torch.isnan(flat)
    count = valid.sum(dim=0).clamp(min=1)
    mean = torch.where(valid, flat, 0.0).sum(dim=0) / count
    var = torch.where(valid, (flat - mean) ** 2, 0.0).sum(dim=0) / count
    std = var.sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    shape = (1, -1) if per_value else (1, 1, 1, 1)
    return mean.float().view(shape), std.float().view(shape)


class TargetScale(nn.Module):
    """The last layer of a regression head: ``y = mean + std * z``.

    The layers before it predict standardised values ``z``, so at initialisation a
    regression head's outputs, errors and gradients are of order one whatever the units
    of its labels, like a classification head's; without it a head must first grow its
    bias to the labels' mean (a fraction near 0.3 with std 0.03 is ten standard
    deviations from 0), and those first large gradients flow into every layer it
    shares. ``mean`` and ``std`` are buffers (saved with the weights, exported with the
    model), set from the train labels by :meth:`fit` before training.
    """

    def __init__(self, task: str, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.task = task
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    def forward(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean

    @torch.no_grad()
    def fit(self, target: Tensor) -> None:
        """Set ``mean``/``std`` from the train split's labels of this task."""
        mean, std = target_statistics(target, per_value=self.mean.dim() == 2)
        self.mean.copy_(mean.view_as(self.mean))
        self.std.copy_(std.view_as(self.std))


def scaled_error_loss(name: str, pred: Tensor, target: Tensor, valid: Tensor, scale: Tensor | None) -> Tensor:
    """``mse``/``l1``/``smooth_l1`` of ``pred`` against ``target`` over the ``valid`` entries,
    with both divided by ``scale`` (the train targets' standard deviation).

    So every regression task's loss is measured in units of its own label spread: the
    same whether a user writes a length in metres or millimetres, and on the scale of a
    classification task's cross-entropy. Without it a task with small-valued labels
    (a fraction in [0, 1] with std 0.03 has an MSE near 1e-4) contributes almost nothing
    to a shared layer's gradient, and every sharing structure is judged by how much it
    starves that task rather than by what sharing does. Metrics stay in raw units.
    """
    if scale is not None:
        scale = scale.to(pred.device)
        pred, target = pred / scale, target / scale
    fn = {"mse": F.mse_loss, "l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss}[name]
    return masked_mean(fn(pred, target.nan_to_num(), reduction="none"), valid)


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

    def describe_output(self, spec: TaskSpec) -> str:
        return (f"(B, {self.output_dim(spec)}) predicted values in the labels' own units (the head's last layer maps "
                "its standardised output back with the train labels' mean and standard deviation); no activation needed.")

    def valid_mask(self, target: Tensor) -> Tensor:
        return ~torch.isnan(target)

    def loss(self, spec: TaskSpec, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """The loss on errors in units of ``weight``, the train targets' standard deviation
        per value (:meth:`loss_weight`; None: raw units)."""
        pred, target = _align(pred.float(), target)
        return scaled_error_loss(spec.loss_name, pred, target, self.valid_mask(target), weight)

    def loss_weight(self, spec: TaskSpec, target: Tensor, class_weighting: str = "none") -> Tensor:
        """The train targets' standard deviation per regressed value, shape ``(1, classes)``."""
        return target_statistics(target, per_value=True)[1]

    def build_head(self, spec: TaskSpec, in_channels: int, **options: Any) -> nn.Module:
        """The pooled head, predicting standardised values, then :class:`TargetScale` to raw units."""
        return nn.Sequential(super().build_head(spec, in_channels, **options), TargetScale(spec.name, (1, self.output_dim(spec))))

    def metric_state(self, spec: TaskSpec, device: torch.device) -> MetricState:
        return RegressionState()
