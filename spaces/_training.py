"""The sections that say what is trained: tasks, backbone, heads and the training recipe."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mtl_models import (
    TaskSpec,
    available_backbones,
    available_task_kinds,
    backbone_options,
)

from ._common import (
    _registered,
    _resolve,
    _Strict,
)


class TaskConfig(_Strict):
    """One task: ``name``, ``kind`` and, per kind, ``classes``, ``loss``, ``metric``."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    kind: str
    classes: PositiveInt | None = None
    loss: str | None = None
    metric: str | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        return _registered("task kind", v, available_task_kinds())

    @model_validator(mode="after")
    def _valid_for_kind(self) -> "TaskConfig":
        spec = self.spec()
        spec.kind_impl.validate(spec)
        return self

    def spec(self) -> TaskSpec:
        return TaskSpec(self.name, self.kind, self.classes, self.loss, self.metric)


class BackboneConfig(_Strict):
    """A registered backbone, its options and an optional local weights file."""

    name: str
    weights: Path | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        return _registered("backbone", v, available_backbones())

    @model_validator(mode="after")
    def _known_options(self) -> "BackboneConfig":
        allowed = backbone_options(self.name)
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise ValueError(
                f"backbone.options: {self.name!r} takes no option(s) {unknown}; allowed: {', '.join(allowed) or 'none'}"
            )
        return self

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        v = _resolve(v, info)
        if v is not None and not v.is_file():
            raise ValueError(f"weights file {str(v)!r} does not exist")
        return v


class HeadConfig(_Strict):
    """Task heads: pool to a ``pool_size`` x ``pool_size`` grid, optional hidden layer."""

    pool_size: PositiveInt = 1
    hidden: NonNegativeInt = 0


class TrainConfig(_Strict):
    """Training settings shared by every trial and baseline (the same budget for all).

    ``lr_schedule``: the learning rate per optimisation step, after ``warmup_epochs`` of
    linear warmup: ``cosine`` (default) decays it to zero by the last step, so the
    last epoch, the one scored, is a stable estimate rather than a noisy sample of a
    model still taking full steps; ``step`` multiplies it by ``lr_gamma`` at each of
    ``lr_milestones`` (fractions of training); ``constant`` keeps it.

    Speed settings (they change how fast, barely what is learned): ``precision``
    ``auto`` trains in bf16 autocast on a GPU that supports it and fp32 elsewhere;
    ``channels_last`` ``auto`` uses the channels-last memory format on GPUs;
    ``compile`` wraps the training forward pass in ``torch.compile`` (pays a
    compile time per trial; worth it for long trials).
    """

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    grad_clip: PositiveFloat | None = None
    lr_schedule: Literal["constant", "cosine", "step"] = "cosine"
    warmup_epochs: NonNegativeFloat = 0.0
    lr_milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75])
    lr_gamma: PositiveFloat = 0.1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False

    @field_validator("lr_milestones")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < m < 1.0 for m in v) or v != sorted(v):
            raise ValueError(f"lr_milestones are increasing fractions of training in (0, 1), got {v}")
        return v

    @model_validator(mode="after")
    def _warmup_within_training(self) -> "TrainConfig":
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be less than epochs ({self.epochs})")
        return self


