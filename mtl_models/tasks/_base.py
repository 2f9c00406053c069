"""Task specs and the narrow base every task kind implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .._registry import Registry


@dataclass(frozen=True)
class TaskSpec:
    """What one task is: its name, kind, output size, loss and metric.

    ``classes`` is the number of classes for classification and the number of
    regressed values for regression (default 1). ``loss`` and ``metric`` default to
    the kind's; the metric decides whether higher is better, which fixes the sign of
    the task's term in Delta_m.
    """

    name: str
    kind: str
    classes: int | None = None
    loss: str | None = None
    metric: str | None = None

    @property
    def kind_impl(self) -> "TaskKind":
        return get_task_kind(self.kind)

    @property
    def loss_name(self) -> str:
        return self.loss or self.kind_impl.default_loss

    @property
    def metric_name(self) -> str:
        return self.metric or self.kind_impl.default_metric

    @property
    def higher_is_better(self) -> bool:
        return self.kind_impl.metrics[self.metric_name]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskSpec":
        return cls(**d)


class MetricState(ABC):
    """Accumulates a task's metrics over batches on the model's device.

    ``update`` never synchronises with the host; ``compute`` does, once per
    evaluation. Missing labels are skipped.
    """

    @abstractmethod
    def update(self, pred: Tensor, target: Tensor) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, float]: ...


class TaskKind(ABC):
    """One kind of task: how its head, loss, metrics and missing labels work."""

    name: ClassVar[str]
    losses: ClassVar[tuple[str, ...]]
    metrics: ClassVar[dict[str, bool]]  # metric name -> higher is better
    default_loss: ClassVar[str]
    default_metric: ClassVar[str]
    target_dtype: ClassVar[torch.dtype]

    def validate(self, spec: TaskSpec) -> None:
        """Raise ``ValueError`` naming the field when ``spec`` is not valid for this kind."""
        if spec.loss is not None and spec.loss not in self.losses:
            raise ValueError(
                f"Task {spec.name!r}: loss {spec.loss!r} is not valid for kind {self.name!r}; "
                f"allowed: {', '.join(self.losses)}."
            )
        if spec.metric is not None and spec.metric not in self.metrics:
            raise ValueError(
                f"Task {spec.name!r}: metric {spec.metric!r} is not valid for kind {self.name!r}; "
                f"allowed: {', '.join(self.metrics)}."
            )

    @abstractmethod
    def output_dim(self, spec: TaskSpec) -> int: ...

    def describe_output(self, spec: TaskSpec) -> str:
        """What the model's output for a task of this kind means, for a deployer (the model
        card): its shape, whether it is logits, probabilities or values in label units, and
        how to turn it into a prediction. Kinds override it; this is the fallback."""
        return f"(B, {self.output_dim(spec)}) raw outputs of kind {self.name!r}: see that kind's documentation."

    dense: ClassVar[bool] = False  # per-pixel outputs at the input's size

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
        """A pooled head: ``(B, C, H, W)`` (or ``(B, C)`` when not ``spatial``) ``-> (B, output_dim)``.

        ``pool_size`` > 1 keeps a coarse spatial grid (where in the image a thing is);
        ``hidden`` > 0 adds one hidden layer. Dense kinds override this with a decoder
        that returns ``(B, output_dim, *output_size)``.
        """
        features = in_channels * pool_size * pool_size if spatial else in_channels
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(pool_size), nn.Flatten()] if spatial else []
        if hidden > 0:
            layers += [nn.Linear(features, hidden), nn.ReLU(inplace=True)]
            features = hidden
        layers.append(nn.Linear(features, self.output_dim(spec)))
        return nn.Sequential(*layers)

    @abstractmethod
    def valid_mask(self, target: Tensor) -> Tensor:
        """Boolean mask of labelled entries of ``target`` (same leading shape)."""

    @abstractmethod
    def loss(self, spec: TaskSpec, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """Mean loss over the labelled entries; 0 (with a gradient path) when none are.

        ``weight``: the kind's class weights (see :meth:`balanced_weights`), or None.
        """

    def balanced_weights(self, spec: TaskSpec, target: Tensor) -> Tensor | None:
        """Class weights against label imbalance (seed 001), from the train targets; None if
        the kind has no classes."""
        return None

    def loss_weight(self, spec: TaskSpec, target: Tensor, class_weighting: str = "none") -> Tensor | None:
        """What :meth:`loss` takes as ``weight``, from the train split's targets: the class
        weights with ``class_weighting: balanced``, else None."""
        return self.balanced_weights(spec, target) if class_weighting == "balanced" else None

    @abstractmethod
    def metric_state(self, spec: TaskSpec, device: torch.device) -> MetricState: ...

    def combine(self, preds: list[Tensor]) -> Tensor:
        """Combine the outputs of ensemble members (default: the mean)."""
        return torch.stack(preds).mean(dim=0)


_KINDS: Registry[TaskKind] = Registry("task kind", defined_by=type)


def register_task_kind(cls: type[TaskKind] | None = None, *, replace: bool = False) -> Any:
    """Register a task kind class under its ``name`` (one instance serves every task of the
    kind): ``@register_task_kind``, or ``@register_task_kind(replace=True)`` to replace one."""
    if cls is None:
        return lambda target: register_task_kind(target, replace=replace)
    _KINDS.register(cls.name, cls(), replace=replace)
    return cls


def available_task_kinds() -> list[str]:
    return _KINDS.names()


def get_task_kind(name: str) -> TaskKind:
    return _KINDS.get(name)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask``; 0 when nothing is masked in (no host sync)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)
