"""Task loss weighting schemes, chosen by name (``static``, ...)."""
from ._base import LossWeighting, available_weightings, build_weighting, register_weighting, stack_losses
from . import _static  # noqa: F401  (register the built-in schemes)

__all__ = ["LossWeighting", "available_weightings", "build_weighting", "register_weighting", "stack_losses"]
