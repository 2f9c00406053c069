"""Multi-class classification: cross-entropy, accuracy and macro-F1; label -1 means missing.

Metrics are torchmetrics' on the labelled rows: ``accuracy`` is the share of labelled
rows whose argmax is the label (``multiclass_accuracy``, micro); ``f1`` is the macro
F1 of ``multiclass_f1_score``, the mean of per-class F1 over the classes that occur in
the labels or the predictions (a class in neither has no F1 and is left out), with
F1 = 0 for a class predicted but never labelled or labelled but never predicted. That is
scikit-learn's ``f1_score(y, p, average="macro")`` too. (Before, the mean ran over the
classes present in the labels only, so a class the model predicted wrongly but that
never occurred in the split did not lower it.)
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
        from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

        target = torch.cat(self.targets) if self.targets else torch.zeros(0, dtype=torch.long)
        valid = target >= 0
        if not bool(valid.any()):
            return {"accuracy": float("nan"), "f1": float("nan")}
        pred, target = torch.cat(self.preds)[valid], target[valid]
        options = {"num_classes": self.num_classes, "validate_args": False}
        return {
            "accuracy": float(multiclass_accuracy(pred, target, average="micro", **options)),
            "f1": float(multiclass_f1_score(pred, target, average="macro", **options)),
        }


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
