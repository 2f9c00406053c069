"""Task loss weighting schemes, chosen by name: ``static``, ``uncertainty``, ``dwa``, ``gradnorm``."""
from ._base import LossWeighting, available_weightings, build_weighting, register_weighting, stack_losses
from . import _dwa, _gradnorm, _static, _uncertainty  # noqa: F401  (register the built-in schemes)

__all__ = ["LossWeighting", "available_weightings", "build_weighting", "register_weighting", "stack_losses"]
