"""Multi-class classification: cross-entropy, accuracy and macro-F1; label -1 means missing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import MetricState, TaskKind, TaskSpec, masked_mean, register_task_kind
from ._counts import ConfusionState, inverse_frequency


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
        return ConfusionState(int(spec.classes), device, ("accuracy", "f1"))

    def combine(self, preds: list[Tensor]) -> Tensor:
        """Average the members' class probabilities; returned as log-probabilities (valid logits)."""
        probs = torch.stack([p.float().softmax(dim=1) for p in preds]).mean(dim=0)
        return probs.clamp_min(1e-12).log()
