"""Task specs and task kinds (heads, losses, metrics, missing labels)."""
from ._base import (
    MetricState,
    TaskKind,
    TaskSpec,
    available_task_kinds,
    get_task_kind,
    masked_mean,
    register_task_kind,
)
from . import _attributes, _classification, _dense, _regression  # noqa: F401  (register the built-in kinds)
from ._classification import accuracy_and_macro_f1
from ._regression import TargetScale

__all__ = [
    "MetricState",
    "TaskKind",
    "TaskSpec",
    "TargetScale",
    "accuracy_and_macro_f1",
    "available_task_kinds",
    "get_task_kind",
    "masked_mean",
    "register_task_kind",
]
