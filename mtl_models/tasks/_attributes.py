"""Binary and multi-label attributes (e.g. CelebA's 40 face attributes): BCE per attribute.

Targets are floats in {0, 1}, shape ``(N,)`` for ``binary`` and ``(N, A)`` for
``multilabel``; NaN marks a missing label of one attribute. Metrics, torchmetrics' on
the labelled entries (a missing label is its ``ignore_index``): ``accuracy``, the share
of labelled entries predicted right at logit 0 (micro); ``f1``, the mean over all ``A``
attributes of each one's F1 at logit 0, 0 for an attribute with no positive label or
prediction (``multilabel_f1_score``, macro; scikit-learn's ``f1_score(..., average=
"macro", zero_division=0)``; before, such attributes were left out of the mean); ``map``,
the mean over all attributes of the average precision (``multilabel_average_precision``,
scikit-learn's ``average_precision_score(..., average="macro")``): tied scores count as
one threshold (before, ties were broken by row order), and an attribute with no positive
label in the split has AP 0, both libraries setting its recall to 1 at every threshold
(before, it was left out of the mean).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import MetricState, TaskKind, TaskSpec, masked_mean, register_task_kind


def _as_matrix(t: Tensor) -> Tensor:
    return t.unsqueeze(1) if t.dim() == 1 else t


class _AttributeState(MetricState):
    """Keeps each batch's logits and labels on the device (``N x A`` values per split);
    ``compute`` takes torchmetrics' metrics over the labelled entries, once."""

    def __init__(self, num_labels: int) -> None:
        self.num_labels = num_labels
        self.scores: list[Tensor] = []
        self.targets: list[Tensor] = []

    def update(self, pred: Tensor, target: Tensor) -> None:
        self.scores.append(_as_matrix(pred).detach().float())
        self.targets.append(_as_matrix(target).detach().float())

    def compute(self) -> dict[str, float]:
        from torchmetrics.functional.classification import (
            multilabel_accuracy,
            multilabel_average_precision,
            multilabel_f1_score,
        )

        empty = {"accuracy": float("nan"), "f1": float("nan"), "map": float("nan")}
        if not self.scores:
            return empty
        scores, targets = torch.cat(self.scores), torch.cat(self.targets)
        valid = ~torch.isnan(targets)
        if not bool(valid.any()):
            return empty
        labels = torch.where(valid, targets, -1.0).long()  # -1: torchmetrics' ignore_index
        # hard predictions and probabilities, so torchmetrics never guesses whether a
        # batch holds logits (it applies a sigmoid only when some value lies outside [0, 1])
        predicted = (scores > 0).long()
        probs = scores.double().sigmoid()  # float64: no ties from saturation below |logit| 36
        options = {"num_labels": self.num_labels, "ignore_index": -1, "validate_args": False}
        with warnings.catch_warnings():  # an attribute with no positive label: AP 0, as documented, once per evaluation
            warnings.filterwarnings("ignore", message="No positive samples found in target")
            average_precision = float(multilabel_average_precision(probs, labels, average="macro", **options))
        return {
            "accuracy": float(multilabel_accuracy(predicted, labels, average="micro", **options)),
            "f1": float(multilabel_f1_score(predicted, labels, average="macro", **options)),
            "map": average_precision,
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

    def describe_output(self, spec: TaskSpec) -> str:
        return (f"(B, {self.output_dim(spec)}) logits, one per attribute: sigmoid gives each attribute's probability "
                "on its own (not a distribution over attributes); > 0 means present (the metric's threshold).")

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
        return _AttributeState(self.output_dim(spec))

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

    def describe_output(self, spec: TaskSpec) -> str:
        return "(B, 1) logit: sigmoid gives the probability of a positive label; > 0 means positive (the metric's threshold)."
