"""Multi-class classification: cross-entropy, accuracy and macro-F1; label -1 means missing.

Metrics are torchmetrics' on the labelled rows: ``accuracy`` is the share of labelled
rows whose argmax is the label (``multiclass_accuracy``, micro); ``f1`` is the macro
F1 of ``multiclass_f1_score``, the mean of per-class F1 over the classes that occur in
the labels or the predictions (a class in neither has no F1 and is left out), with
F1 = 0 for a class predicted but never labelled or labelled but never predicted. That is
scikit-learn's ``f1_score(y, p, average="macro")`` too. (Before, the mean ran over the
classes present in the labels only, so a class the model predicted wrongly but that
never occurred in the split did not lower it.)

They are computed here, from one confusion matrix, with torchmetrics' float32 operations
in torchmetrics' order (``multiclass_accuracy``/``multiclass_f1_score``, 1.x), so the
numbers are torchmetrics' to the bit (``tests/test_metrics.py``), without importing
torchmetrics: its import (matplotlib, scipy, torchvision, ...) cost every trial process
about a second of CPU before its first result.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import MetricState, TaskKind, TaskSpec, masked_mean, register_task_kind
from ._counts import inverse_frequency


class ClassificationState(MetricState):
    """Keeps each batch's argmax class and label on the device (``N`` integers per split);
    ``compute`` takes torchmetrics' accuracy and macro-F1 over the labelled rows, once."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.preds: list[Tensor] = []
        self.targets: list[Tensor] = []

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.preds.append(pred.detach().argmax(dim=1))
        self.targets.append(target.detach())

    def compute(self) -> dict[str, float]:
        target = torch.cat(self.targets) if self.targets else torch.zeros(0, dtype=torch.long)
        valid = target >= 0
        if not bool(valid.any()):
            return {"accuracy": float("nan"), "f1": float("nan")}
        return accuracy_and_macro_f1(torch.cat(self.preds)[valid], target[valid], self.num_classes)


def accuracy_and_macro_f1(pred: Tensor, target: Tensor, num_classes: int) -> dict[str, float]:
    """Micro accuracy and macro F1 of class indices ``pred`` against labels ``target`` (both
    ``(N,)``, every label in ``0..num_classes-1``), as torchmetrics computes them (module doc).

    From the confusion matrix ``C[label, prediction]``: per class ``tp`` (its diagonal entry),
    ``fp`` (its column sum less ``tp``), ``fn`` (its row sum less ``tp``) and
    ``F1 = 2 tp / (2 tp + fn + fp)``, averaged over the classes with ``tp + fp + fn > 0``."""
    hits = (pred == target).sum()
    misses = (pred != target).sum()
    confusion = torch.bincount(target.long() * num_classes + pred.long(), minlength=num_classes**2)
    confusion = confusion.reshape(num_classes, num_classes)
    tp = confusion.diag()
    fp = confusion.sum(0) - tp
    fn = confusion.sum(1) - tp
    score = _safe_divide(2.0 * tp, 2.0 * tp + 1.0 * fn + fp)
    weights = torch.ones_like(score)
    weights[tp + fp + fn == 0] = 0.0  # a class neither labelled nor predicted has no F1
    return {
        "accuracy": float(_safe_divide(hits, hits + misses)),
        "f1": float(_safe_divide(weights * score, weights.sum(-1, keepdim=True)).sum(-1)),
    }


def _safe_divide(num: Tensor, denom: Tensor) -> Tensor:
    """``num / denom`` in float32 (0 where ``denom`` is 0), as torchmetrics divides."""
    num = num if num.is_floating_point() else num.float()
    denom = denom if denom.is_floating_point() else denom.float()
    return torch.where(denom != 0, num / denom, torch.zeros((), dtype=num.dtype, device=num.device))


@register_task_kind
class Classification(TaskKind):
    name = "classification"
    losses = ("cross_entropy",)
    metrics = {"accuracy": True, "f1": True}
    default_loss = "cross_entropy"
    default_metric = "accuracy"
    target_dtype = torch.long

    def validate(self, spec: TaskSpec) -> None:
        super().validate(spec)
        if spec.classes is None or spec.classes < 2:
            raise ValueError(
                f"Task {spec.name!r}: kind {self.name!r} needs 'classes' >= 2, got {spec.classes!r}."
            )

    def output_dim(self, spec: TaskSpec) -> int:
        return int(spec.classes)

    def describe_output(self, spec: TaskSpec) -> str:
        return (f"(B, {spec.classes}) logits (unnormalised scores), one per class: softmax over dim 1 gives the "
                f"class probabilities, argmax the class index 0..{int(spec.classes) - 1}.")

    def valid_mask(self, target: Tensor) -> Tensor:
        return target >= 0

    def loss(self, spec: TaskSpec, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        per_sample = F.cross_entropy(pred.float(), target.clamp(min=0), weight=weight, reduction="none")
        valid = self.valid_mask(target)
        if weight is None:
            return masked_mean(per_sample, valid)
        # weighted mean, as F.cross_entropy(weight=...) does: divide by the summed weights
        weights = weight[target.clamp(min=0)] * valid
        return (per_sample * valid).sum() / weights.sum().clamp(min=1e-12)

    def balanced_weights(self, spec: TaskSpec, target: Tensor) -> Tensor:
        labels = target[self.valid_mask(target)]
        return inverse_frequency(torch.bincount(labels.flatten(), minlength=int(spec.classes)))

    def metric_state(self, spec: TaskSpec, device: torch.device) -> MetricState:
        return ClassificationState(int(spec.classes))

    def combine(self, preds: list[Tensor]) -> Tensor:
        """Average the members' class probabilities; returned as log-probabilities (valid logits)."""
        probs = torch.stack([p.float().softmax(dim=1) for p in preds]).mean(dim=0)
        return probs.clamp_min(1e-12).log()
