"""Confusion-matrix accumulation shared by the classification-like kinds."""
from __future__ import annotations

import torch
from torch import Tensor

from ._base import MetricState


def confusion(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(C, C)`` counts of (target, prediction) over entries with ``target >= 0``; no host sync."""
    valid = target >= 0
    index = target.clamp(min=0) * num_classes + pred
    return torch.bincount(index[valid].flatten(), minlength=num_classes * num_classes).view(num_classes, num_classes)


def inverse_frequency(counts: Tensor) -> Tensor:
    """``w_c = N / (C * n_c)`` (scikit-learn's "balanced"), ``n_c`` floored at 1."""
    counts = counts.double()
    return (counts.sum() / (len(counts) * counts.clamp(min=1))).float()


class ConfusionState(MetricState):
    """Accumulates a confusion matrix; ``metrics`` names what ``compute`` derives from it."""

    def __init__(self, num_classes: int, device: torch.device, metrics: tuple[str, ...]) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
        self.metrics = metrics

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.matrix += confusion(pred.argmax(dim=1), target, self.num_classes)

    def compute(self) -> dict[str, float]:
        m = self.matrix.double().cpu()
        total = m.sum()
        tp = m.diag()
        support, predicted = m.sum(1), m.sum(0)
        out: dict[str, float] = {}
        if total == 0:
            return {name: float("nan") for name in self.metrics}
        if "accuracy" in self.metrics or "pixel_accuracy" in self.metrics:
            key = "accuracy" if "accuracy" in self.metrics else "pixel_accuracy"
            out[key] = float(tp.sum() / total)
        if "f1" in self.metrics:
            denom = support + predicted
            f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.nan)
            out["f1"] = float(f1[support > 0].mean())
        if "miou" in self.metrics:
            union = support + predicted - tp
            iou = tp / union.clamp(min=1)
            out["miou"] = float(iou[union > 0].mean())
        return out

    def per_class_accuracy(self) -> list[float]:
        m = self.matrix.double().cpu()
        return (m.diag() / m.sum(1).clamp(min=1)).tolist()
