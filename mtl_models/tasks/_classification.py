"""Multi-class classification: cross-entropy, accuracy; label -1 means missing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import MetricState, TaskKind, TaskSpec, masked_mean, register_task_kind


class _AccuracyState(MetricState):
    def __init__(self, device: torch.device) -> None:
        self.correct = torch.zeros((), device=device)
        self.total = torch.zeros((), device=device)

    def update(self, pred: Tensor, target: Tensor) -> None:
        valid = target >= 0
        self.correct += ((pred.argmax(dim=1) == target) & valid).sum()
        self.total += valid.sum()

    def compute(self) -> dict[str, float]:
        total = float(self.total)
        return {"accuracy": float(self.correct) / total if total else float("nan")}


@register_task_kind
class Classification(TaskKind):
    name = "classification"
    losses = ("cross_entropy",)
    metrics = {"accuracy": True}
    default_loss = "cross_entropy"
    default_metric = "accuracy"
    target_dtype = torch.long

    def validate(self, spec: TaskSpec) -> None:
        super().validate(spec)
        if spec.classes is None or spec.classes < 2:
            raise ValueError(
                f"Task {spec.name!r}: kind 'classification' needs 'classes' >= 2, got {spec.classes!r}."
            )

    def output_dim(self, spec: TaskSpec) -> int:
        return int(spec.classes)

    def valid_mask(self, target: Tensor) -> Tensor:
        return target >= 0

    def loss(self, spec: TaskSpec, pred: Tensor, target: Tensor) -> Tensor:
        per_sample = F.cross_entropy(pred.float(), target.clamp(min=0), reduction="none")
        return masked_mean(per_sample, self.valid_mask(target))

    def metric_state(self, spec: TaskSpec, device: torch.device) -> MetricState:
        return _AccuracyState(device)

    def combine(self, preds: list[Tensor]) -> Tensor:
        """Average the members' class probabilities; returned as log-probabilities (valid logits)."""
        probs = torch.stack([p.float().softmax(dim=1) for p in preds]).mean(dim=0)
        return probs.clamp_min(1e-12).log()
