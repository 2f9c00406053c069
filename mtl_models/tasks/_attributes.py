"""Binary and multi-label attributes (e.g. CelebA's 40 face attributes): BCE per attribute.

Targets are floats in {0, 1}, shape ``(N,)`` for ``binary`` and ``(N, A)`` for
``multilabel``; NaN marks a missing label of one attribute. Metrics: accuracy and
macro-F1 at logit 0, and mAP (mean over attributes of the average precision).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import MetricState, TaskKind, TaskSpec, masked_mean, register_task_kind


def _as_matrix(t: Tensor) -> Tensor:
    return t.unsqueeze(1) if t.dim() == 1 else t


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """AP of one attribute: mean precision at the rank of each positive (ties by order)."""
    order = scores.argsort(descending=True)
    hits = labels[order]
    positives = hits.sum()
    if positives == 0:
        return float("nan")
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=hits.dtype, device=hits.device)
    return float((precision * hits).sum() / positives)


class _AttributeState(MetricState):
    def __init__(self, device: torch.device) -> None:
        self.scores: list[Tensor] = []
        self.targets: list[Tensor] = []

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.scores.append(_as_matrix(pred).detach().float())
        self.targets.append(_as_matrix(target).detach().float())

    def compute(self) -> dict[str, float]:
        if not self.scores:
            return {"accuracy": float("nan"), "f1": float("nan"), "map": float("nan")}
        scores, targets = torch.cat(self.scores).cpu(), torch.cat(self.targets).cpu()
        valid = ~torch.isnan(targets)
        labels = targets.nan_to_num()
        predicted = scores > 0
        correct = ((predicted == (labels > 0.5)) & valid).sum()
        accuracy = float(correct / valid.sum().clamp(min=1))
        f1s, aps = [], []
        for a in range(scores.shape[1]):
            v = valid[:, a]
            y, p = labels[v, a] > 0.5, predicted[v, a]
            tp, fp, fn = (y & p).sum(), (~y & p).sum(), (y & ~p).sum()
            if tp + fp + fn > 0:
                f1s.append(float(2 * tp / (2 * tp + fp + fn)))
            aps.append(average_precision(scores[v, a], y.double()))
        aps = [a for a in aps if a == a]
        return {
            "accuracy": accuracy,
            "f1": sum(f1s) / len(f1s) if f1s else float("nan"),
            "map": sum(aps) / len(aps) if aps else float("nan"),
        }


@register_task_kind
class MultiLabel(TaskKind):
    name = "multilabel"
    losses = ("bce",)
    metrics = {"accuracy": True, "f1": True, "map": True}
    default_loss = "bce"
    default_metric = "map"
    target_dtype = torch.float32

    def validate(self, spec: TaskSpec) -> None:
        super().validate(spec)
        if spec.classes is None or spec.classes < 1:
            raise ValueError(f"Task {spec.name!r}: kind {self.name!r} needs 'classes' (attributes) >= 1.")

    def output_dim(self, spec: TaskSpec) -> int:
        return int(spec.classes)

    def valid_mask(self, target: Tensor) -> Tensor:
        return ~torch.isnan(target)

    def loss(self, spec: TaskSpec, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        pred, target = _as_matrix(pred.float()), _as_matrix(target)
        per_entry = F.binary_cross_entropy_with_logits(pred, target.nan_to_num(), pos_weight=weight, reduction="none")
        return masked_mean(per_entry, self.valid_mask(target))

    def balanced_weights(self, spec: TaskSpec, target: Tensor) -> Tensor:
        """BCE ``pos_weight`` per attribute: negatives / positives (1 where a class is absent)."""
        target = _as_matrix(target)
        valid = self.valid_mask(target)
        positives = ((target > 0.5) & valid).sum(0).double()
        negatives = ((target <= 0.5) & valid).sum(0).double()
        ratio = torch.where((positives > 0) & (negatives > 0), negatives / positives.clamp(min=1), 1.0)
        return ratio.float()

    def metric_state(self, spec: TaskSpec, device: torch.device) -> MetricState:
        return _AttributeState(device)

    def combine(self, preds: list[Tensor]) -> Tensor:
        """Average the members' probabilities; returned as logits."""
        probs = torch.stack([p.float().sigmoid() for p in preds]).mean(dim=0).clamp(1e-6, 1 - 1e-6)
        return torch.log(probs / (1 - probs))


@register_task_kind
class Binary(MultiLabel):
    """One yes/no attribute: the single-attribute case of ``multilabel``; default metric accuracy."""

    name = "binary"
    default_metric = "accuracy"

    def validate(self, spec: TaskSpec) -> None:
        TaskKind.validate(self, spec)
        if spec.classes not in (None, 1):
            raise ValueError(f"Task {spec.name!r}: kind 'binary' has one output; use 'multilabel' for {spec.classes}.")

    def output_dim(self, spec: TaskSpec) -> int:
        return 1
