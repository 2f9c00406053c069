"""Confusion-matrix accumulation for the per-pixel class maps of segmentation."""
from __future__ import annotations

import torch
from torch import Tensor

from ._base import MetricState


def confusion(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(C, C)`` counts of (target, prediction) over entries with ``target >= 0``.

    No host sync: unlabelled entries are counted in one extra bin that is dropped
    (``torch.bincount`` on CUDA reads the largest index back to size its output).
    """
    bins = num_classes * num_classes
    index = torch.where(target >= 0, target * num_classes + pred, bins).flatten()
    counts = torch.zeros(bins + 1, dtype=torch.long, device=pred.device)
    counts.index_add_(0, index, torch.ones_like(index))
    return counts[:bins].view(num_classes, num_classes)


def inverse_frequency(counts: Tensor) -> Tensor:
    """``w_c = N / (C * n_c)`` (scikit-learn's "balanced"), ``n_c`` floored at 1."""
    counts = counts.double()
    return (counts.sum() / (len(counts) * counts.clamp(min=1))).float()


class ConfusionState(MetricState):
    """Accumulates a confusion matrix of the argmax class per labelled pixel; ``compute``
    derives ``miou`` (mean IoU over the classes with a non-empty union: labelled or
    predicted somewhere, as torchmetrics' ``MulticlassJaccardIndex(average="macro")`` and
    scikit-learn's ``jaccard_score(average="macro")``) and ``pixel_accuracy``."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.matrix += confusion(pred.argmax(dim=1), target, self.num_classes)

    def compute(self) -> dict[str, float]:
        m = self.matrix.double().cpu()
        total = m.sum()
        if total == 0:
            return {"miou": float("nan"), "pixel_accuracy": float("nan")}
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        iou = tp / union.clamp(min=1)
        return {"miou": float(iou[union > 0].mean()), "pixel_accuracy": float(tp.sum() / total)}
