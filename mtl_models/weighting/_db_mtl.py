"""DB-MTL, Dual-Balancing Multi-Task Learning (Lin, Ye, Xu, Zhang et al. 2023).

Two balancings per step (the paper's Algorithm 1; LibMTL's ``weighting/DB_MTL.py``):

- loss scale: every task trains on ``log(L_t + 1e-8)`` instead of ``L_t``, so a task's
  gradient is ``grad L_t / L_t`` whatever the unit of its loss;
- gradient magnitude: on the shared parameters, each task's gradient of its log loss
  ``g_t`` enters an exponential moving average ``G_t <- g_t + beta_k (G_t - g_t)`` with
  ``beta_k = beta / k^beta_sigma`` at step ``k`` (``G_t`` starts at 0), and the update is
  ``sum_t (max_s |G_s| / (|G_t| + 1e-8)) G_t``: every task's averaged gradient scaled to
  the largest norm among them, then summed.

A gradient method: the tasks' gradients on the shared parameters come from the same
Jacobian, on the same parameters, as the aggregators' (:class:`GradientAggregation`
decides which parameters those are, so DB-MTL follows it); the combination is
:class:`DualBalancing`. Every other parameter takes the gradient of ``sum_t log(L_t + 1e-8)``
(in LibMTL each task's backward pass leaves its log loss's gradient on the task's own
layers). The moving average and the step count are buffers: a resumed trial continues them.
``weights()`` reports the scale factors ``max_s |G_s| / |G_t|`` normalised to sum to 1.
"""
from __future__ import annotations

from typing import Annotated, Any, Sequence

import torch
from annotated_types import Ge, Lt
from torch import Tensor, nn

from ..tasks import TaskSpec
from ._aggregators import GradientAggregation, Scope
from ._base import register_weighting, stack_losses

EPS = 1e-8  # LibMTL's, inside the log and under the norms


class DualBalancing(nn.Module):
    """DB-MTL's combination of a Jacobian ``(T, D)`` (task gradients of the log losses on
    the shared parameters) into one gradient ``(D,)``: the moving average ``ema (T, D)``
    of the rows, each average scaled to the largest one's norm, summed. ``scales (T,)``:
    the factors of the last call. Called like a torchjd aggregator."""

    def __init__(self, beta: float, beta_sigma: float) -> None:
        super().__init__()
        self.beta = beta
        self.beta_sigma = beta_sigma
        self.register_buffer("ema", torch.zeros(0))  # sized (T, D) by the first Jacobian
        self.register_buffer("scales", torch.zeros(0))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def forward(self, jacobian: Tensor) -> Tensor:
        if self.ema.shape != jacobian.shape:  # the first step (or the shared parameters changed)
            self.ema = torch.zeros_like(jacobian)
            self.step.zero_()
        self.step += 1
        rate = self.beta / float(self.step.item()) ** self.beta_sigma
        self.ema = jacobian + rate * (self.ema - jacobian)
        norms = self.ema.norm(dim=1)
        self.scales = norms.max() / (norms + EPS)
        return self.scales @ self.ema

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in ("ema", "scales"):  # lazily sized: take the checkpoint's size
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@register_weighting("db_mtl")
class DBMTL(GradientAggregation):
    """``beta`` (``db_mtl_beta``): the moving average's weight on the past (LibMTL's 0.9);
    ``beta_sigma`` (``db_mtl_beta_sigma``): its decay with the step, ``beta / k^beta_sigma``
    (LibMTL's 0: a constant ``beta``)."""

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        *,
        beta: Annotated[float, Ge(0), Lt(1)] = 0.9,
        beta_sigma: Annotated[float, Ge(0)] = 0.0,
        scope: Scope = "shared",
    ) -> None:
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        super().__init__(tasks, scope=scope)

    def make(self, num_tasks: int) -> Any:
        return DualBalancing(self.beta, self.beta_sigma)

    def backward(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        """Aggregate the log losses' gradients (:class:`GradientAggregation` with
        :class:`DualBalancing`); returns the plain sum of the losses, for the logs."""
        super().backward({t: torch.log(loss + EPS) for t, loss in losses.items()}, model)
        scales = self.aggregator.scales
        if scales.numel() == len(self.task_names):
            self.last.copy_(scales / scales.sum())
        return stack_losses(losses, self.task_names).detach().sum()
