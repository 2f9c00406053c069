"""Task loss weighting schemes, chosen by name: ``static``, ``uncertainty``, ``dwa``, ``gradnorm``,
``famo``, the gradient aggregators ``upgrad``, ``pcgrad``, ``cagrad``, ``mgda``, ``imtlg``,
``aligned_mtl``, ``nash_mtl`` (torchjd) and ``db_mtl``.

One module per scheme; a scheme's keyword-only constructor arguments are its parameters
(see ``_base``), which the experiment's space and the sampler read from the registry.
"""
from ._base import (
    LossWeighting,
    SchemeParameter,
    available_weightings,
    build_weighting,
    register_weighting,
    searchable_weighting_parameters,
    stack_losses,
    weighting_parameters,
    weighting_settings,
)
from . import _aggregators, _db_mtl, _dwa, _famo, _gradnorm, _static, _uncertainty  # noqa: F401  (register the built-in schemes)

__all__ = [
    "LossWeighting",
    "SchemeParameter",
    "available_weightings",
    "build_weighting",
    "register_weighting",
    "searchable_weighting_parameters",
    "stack_losses",
    "weighting_parameters",
    "weighting_settings",
]
