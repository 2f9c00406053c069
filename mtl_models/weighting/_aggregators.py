"""Gradient aggregation (torchjd, Quinton & Rey 2024): instead of one weighted sum of the
losses, the tasks' gradients on the parameters every task shares are combined by a
method that resolves their conflicts, and the update follows that combination.

Per step: the Jacobian of the task losses with respect to the model's
``shared_parameters()`` (the parameters GradNorm balances: a hard split's deepest
shared stage, the stage before a cross-stitch network's last unit in every column,
MTAN's last backbone stage) is reduced by the aggregator to one gradient; every other
parameter takes the gradient of the plain sum of the losses (each task's own layers
only see its own loss). A model with nothing shared falls back to that sum.

The methods (torchjd's implementations; the papers):

- ``upgrad``: UPGrad (Quinton & Rey 2024), each gradient projected onto the dual cone of
  all of them, averaged: no task's loss increases to first order;
- ``pcgrad``: PCGrad (Yu et al. 2020), a gradient's component conflicting with another's
  removed;
- ``cagrad``: CAGrad (Liu et al. 2021), the mean gradient corrected towards the
  worst-off task within a ball of radius ``c`` times its norm;
- ``mgda``: MGDA (Sener & Koltun 2018), the min-norm convex combination;
- ``imtlg``: IMTL-G (Liu et al. 2021), equal projections onto every task's unit gradient;
- ``aligned_mtl``: Aligned-MTL (Senushkin et al. 2023), the gradients' principal
  components aligned (condition number 1);
- ``nash_mtl``: Nash-MTL (Navon et al. 2022), a Nash bargaining solution, recomputed
  every ``update_every`` steps.

``weights()`` reports the weights the last step gave each task's gradient (normalised to
sum to 1; PCGrad's are not defined: equal).
"""
from __future__ import annotations

import warnings
from typing import Annotated, Any, Sequence

import torch
from annotated_types import Ge, Gt
from torch import Tensor, nn

from ..tasks import TaskSpec
from ._base import LossWeighting, register_weighting, stack_losses


class GradientAggregation(LossWeighting):
    """The base of the aggregators: subclasses build a torchjd aggregator in ``make``."""

    def __init__(self, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(tasks)
        n = len(self.task_names)
        self.register_buffer("last", torch.full((n,), 1.0 / n))
        self.aggregator = self.make(n)

    def make(self, num_tasks: int) -> Any:
        raise NotImplementedError

    def combine(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        """The plain sum (what is logged and what a model without shared layers trains on)."""
        return stack_losses(losses, self.task_names).sum()

    def backward(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        from torchjd.autojac import backward, jac_to_grad

        stacked = stack_losses(losses, self.task_names)
        shared = [p for p in getattr(model, "shared_parameters", lambda: [])() if p.requires_grad]
        if not shared or len(self.task_names) < 2 or not torch.is_grad_enabled():
            return super().backward(losses, model)
        ids = {id(p) for p in shared}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        backward(list(stacked), inputs=shared, retain_graph=bool(others))
        with warnings.catch_warnings():  # Nash-MTL's cvxpy problem warns on every solve that it is not DPP
            warnings.simplefilter("ignore", UserWarning)
            weights = jac_to_grad(shared, self.aggregator)
        if others:
            torch.autograd.backward(stacked.sum(), inputs=others)
        if isinstance(weights, Tensor) and weights.numel() == len(self.task_names):
            total = weights.detach().abs().sum()
            self.last.copy_(weights.detach().to(self.last) / total if total > 0 else self.last)
        return stacked.detach().sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.last.tolist()))


@register_weighting("upgrad")
class UPGrad(GradientAggregation):
    def make(self, num_tasks: int) -> Any:
        from torchjd.aggregation import UPGrad as Method

        return Method()


@register_weighting("pcgrad")
class PCGrad(GradientAggregation):
    def make(self, num_tasks: int) -> Any:
        from torchjd.aggregation import PCGrad as Method

        return Method()


@register_weighting("cagrad")
class CAGrad(GradientAggregation):
    """``c`` (``cagrad_c``): the radius of the ball around the mean gradient, relative to its
    norm (the paper's 0.4-0.5; 0 is the mean gradient)."""

    def __init__(self, tasks: Sequence[TaskSpec], *, c: Annotated[float, Ge(0)] = 0.5) -> None:
        self.c = float(c)
        super().__init__(tasks)

    def make(self, num_tasks: int) -> Any:
        from torchjd.aggregation import CAGrad as Method

        return Method(c=self.c)


@register_weighting("mgda")
class MGDA(GradientAggregation):
    def make(self, num_tasks: int) -> Any:
        from torchjd.aggregation import MGDA as Method

        return Method()


@register_weighting("imtlg")
class IMTLG(GradientAggregation):
    def make(self, num_tasks: int) -> Any:
        from torchjd.aggregation import IMTLG as Method

        return Method()


@register_weighting("aligned_mtl")
class AlignedMTL(GradientAggregation):
    def make(self, num_tasks: int) -> Any:
        from torchjd.aggregation import AlignedMTL as Method

        return Method()


@register_weighting("nash_mtl")
class NashMTL(GradientAggregation):
    """``update_every`` (``nash_mtl_update_every``): solve the bargaining problem every this
    many steps and keep the weights in between (the paper's speed-up; 1: every step)."""

    def __init__(self, tasks: Sequence[TaskSpec], *, update_every: Annotated[int, Gt(0)] = 1) -> None:
        self.update_every = int(update_every)
        super().__init__(tasks)

    def make(self, num_tasks: int) -> Any:
        from torchjd.aggregation import NashMTL as Method

        return Method(n_tasks=num_tasks, update_weights_every=self.update_every)
