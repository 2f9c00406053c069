"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018).

Learned weights ``w_t`` (start at 1) are moved so that each task's gradient norm at
the last shared layer ``W``, ``G_t = ||grad_W w_t L_t||``, approaches
``mean(G) * r_t^alpha``, where ``r_t = (L_t / L_t(0)) / mean(L / L(0))`` is the task's
relative inverse training rate: tasks that learn more slowly are pushed to train
faster. ``w`` is updated only by ``L_grad = sum_t |G_t - target_t|`` (target held
constant), the network only by ``sum_t w_t L_t``, and after every step the weights
are renormalised to sum to ``T`` (eq. 2 and sec. 3.3). ``weights()`` reports them
divided by ``T`` to sum to 1 like the other schemes.

Models without a layer all tasks share (a hard split at 0) give GradNorm nothing to
balance; it then keeps equal weights.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..tasks import TaskSpec
from ._base import LossWeighting, register_weighting, stack_losses


@register_weighting("gradnorm")
class GradNorm(LossWeighting):
    """``alpha`` (``gradnorm_alpha``): the strength of the pull towards equal training rates
    (the paper's 1.5 for NYUv2; 0 asks only for equal gradient norms)."""

    def __init__(self, tasks: Sequence[TaskSpec], *, alpha: float = 1.5) -> None:
        super().__init__(tasks)
        self.alpha = float(alpha)
        n = len(self.task_names)
        self.w = nn.Parameter(torch.ones(n))
        self.register_buffer("initial", torch.full((n,), float("nan")))

    def combine(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        stacked = stack_losses(losses, self.task_names)
        n = len(self.task_names)
        with torch.no_grad():  # renormalise after the previous optimiser step
            self.w.clamp_(min=1e-4).mul_(n / self.w.sum())
            if torch.isnan(self.initial).any():
                self.initial.copy_(stacked.detach().clamp(min=1e-12))
        shared = [p for p in getattr(model, "shared_parameters", lambda: [])() if p.requires_grad]
        if shared and self.training and torch.is_grad_enabled():
            norms = []
            for i in range(n):
                grads = torch.autograd.grad(self.w[i] * stacked[i], shared, retain_graph=True, create_graph=True)
                norms.append(torch.cat([g.flatten() for g in grads]).norm())
            norms_t = torch.stack(norms)
            with torch.no_grad():
                ratio = stacked.detach() / self.initial
                rate = ratio / ratio.mean()
                target = norms_t.mean() * rate.pow(self.alpha)
            grad_loss = (norms_t - target).abs().sum()
            self.w.grad = torch.autograd.grad(grad_loss, self.w, retain_graph=True)[0]
        return (self.w.detach() * stacked).sum()

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.w], "lr_scale": 1.0, "weight_decay": 0.0}]

    def weights(self) -> dict[str, float]:
        w = self.w.detach()
        return dict(zip(self.task_names, (w / w.sum()).tolist()))
