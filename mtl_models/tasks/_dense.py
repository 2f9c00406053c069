"""Dense per-pixel tasks: semantic segmentation and dense regression (depth/normal-like).

Both use a light decoder head: conv3x3-BN-ReLU, a 1x1 conv to the outputs, then
bilinear upsampling to the input size, so outputs are ``(B, K, H, W)`` whatever the
stage's resolution. Segmentation targets are class maps ``(N, H, W)`` (-1 = unlabelled
pixel); dense-regression targets are ``(N, K, H, W)`` or ``(N, H, W)`` (NaN = missing).

Metrics accumulate per batch on the device (a confusion matrix, error sums), since a
split's per-pixel outputs are too large to keep for one torchmetrics call at the end,
and torchmetrics' own per-batch update drops unlabelled pixels by boolean indexing, a
host sync per batch. Their definitions are torchmetrics': ``miou`` is
``MulticlassJaccardIndex(average="macro")`` (the mean IoU over classes labelled or
predicted somewhere), ``pixel_accuracy`` the share of labelled pixels right, ``mae`` and
``rmse`` over the labelled values (tests/test_metrics.py compares them).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import MetricState, TaskKind, TaskSpec, masked_mean, register_task_kind
from ._counts import ConfusionState, inverse_frequency
from ._regression import TargetScale, _align, scaled_error_loss, target_statistics


class ErrorState(MetricState):
    """MAE and RMSE over the non-NaN entries of maps, from sums accumulated per batch.

    Dense regression keeps no per-pixel outputs (a split's maps would not fit); it sums
    the masked absolute and squared errors (no host sync, float64). The numbers are
    torchmetrics' ``mean_absolute_error`` and ``mean_squared_error(squared=False)`` on the
    labelled pixels (tests/test_metrics.py compares them).
    """

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


class DenseHead(nn.Module):
    """``(B, C, h, w) -> (B, out, H, W)`` with ``(H, W) = output_size``."""

    def __init__(self, in_channels: int, out_channels: int, output_size: tuple[int, int], hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
        )
        self.output_size = (int(output_size[0]), int(output_size[1]))

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(self.body(x), size=self.output_size, mode="bilinear", align_corners=False)


class _DenseKind(TaskKind):
    dense = True

    def build_head(
        self,
        spec: TaskSpec,
        in_channels: int,
        *,
        spatial: bool = True,
        pool_size: int = 1,
        hidden: int = 0,
        output_size: tuple[int, int] | None = None,
    ) -> nn.Module:
        if not spatial:
            raise ValueError(f"Task {spec.name!r} ({self.name}) needs a spatial last stage, not vectors.")
        if output_size is None:
            raise ValueError(f"Task {spec.name!r} ({self.name}) needs the input size for its decoder.")
        return DenseHead(in_channels, self.output_dim(spec), output_size, hidden=hidden or 64)


@register_task_kind
class Segmentation(_DenseKind):
    name = "segmentation"
    losses = ("cross_entropy",)
    metrics = {"miou": True, "pixel_accuracy": True}
    default_loss = "cross_entropy"
    default_metric = "miou"
    target_dtype = torch.long

    def validate(self, spec: TaskSpec) -> None:
        super().validate(spec)
        if spec.classes is None or spec.classes < 2:
            raise ValueError(f"Task {spec.name!r}: kind 'segmentation' needs 'classes' >= 2, got {spec.classes!r}.")

    def output_dim(self, spec: TaskSpec) -> int:
        return int(spec.classes)

    def describe_output(self, spec: TaskSpec) -> str:
        return (f"(B, {spec.classes}, H, W) per-pixel logits at the input's size: softmax over dim 1 gives each "
                "pixel's class probabilities, argmax over dim 1 the class map.")

    def valid_mask(self, target: Tensor) -> Tensor:
        return target >= 0

    def loss(self, spec: TaskSpec, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        per_pixel = F.cross_entropy(pred.float(), target.clamp(min=0), weight=weight, reduction="none")
        return masked_mean(per_pixel, self.valid_mask(target))

    def balanced_weights(self, spec: TaskSpec, target: Tensor) -> Tensor:
        labels = target[self.valid_mask(target)]
        return inverse_frequency(torch.bincount(labels.flatten(), minlength=int(spec.classes)))

    def metric_state(self, spec: TaskSpec, device: torch.device) -> MetricState:
        return ConfusionState(int(spec.classes), device)

    def combine(self, preds: list[Tensor]) -> Tensor:
        probs = torch.stack([p.float().softmax(dim=1) for p in preds]).mean(dim=0)
        return probs.clamp_min(1e-12).log()


@register_task_kind
class DenseRegression(_DenseKind):
    name = "dense_regression"
    losses = ("l1", "mse", "smooth_l1")
    metrics = {"mae": False, "rmse": False}
    default_loss = "l1"
    default_metric = "mae"
    target_dtype = torch.float32

    def output_dim(self, spec: TaskSpec) -> int:
        return int(spec.classes or 1)

    def describe_output(self, spec: TaskSpec) -> str:
        return (f"(B, {self.output_dim(spec)}, H, W) per-pixel predicted values at the input's size, in the label "
                "maps' own units; no activation needed.")

    def valid_mask(self, target: Tensor) -> Tensor:
        return ~torch.isnan(target)

    def loss(self, spec: TaskSpec, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """The loss on errors in units of ``weight``, the train maps' standard deviation (None: raw units)."""
        if target.dim() == 3:
            target = target.unsqueeze(1)
        return scaled_error_loss(spec.loss_name, pred.float(), target, self.valid_mask(target), weight)

    def loss_weight(self, spec: TaskSpec, target: Tensor, class_weighting: str = "none") -> Tensor:
        """The standard deviation of every labelled value of the train maps, shape ``(1, 1, 1, 1)``."""
        return target_statistics(target, per_value=False)[1]

    def build_head(self, spec: TaskSpec, in_channels: int, **options: Any) -> nn.Module:
        """The decoder, predicting standardised values, then :class:`TargetScale` to raw units."""
        return nn.Sequential(super().build_head(spec, in_channels, **options), TargetScale(spec.name, (1, 1, 1, 1)))

    def metric_state(self, spec: TaskSpec, device: torch.device) -> MetricState:
        return ErrorState(device)
