"""FAMO, Fast Adaptive Multitask Optimization (Liu, Liu, Jin, Stone & Liu, NeurIPS 2023).

Task logits ``w`` (start at 0), weights ``z = softmax(w)``. The network descends
``sum_t z_t log(L_t - m_t + eps) / c`` with ``c = sum_t z_t / (L_t - m_t + eps)`` held
constant, i.e. each task's gradient is weighted by ``z_t / (c (L_t - m_t + eps))``:
on the log losses, so every task's loss falls at the rate ``z`` asks, whatever its
scale. After the network's step the same batch is evaluated again (no gradient) and
``w`` moves by its own Adam (rate ``w_lr``, weight decay ``gamma``) along
``-J_softmax(w)^T delta``, ``delta_t = log(L_t - m_t + eps) - log(L_t' - m_t + eps)`` the
drop of each task's log loss in that step: a task whose loss fell less gains weight
(the paper's Algorithm 1). One extra forward pass and O(T) work per step, no per-task
backward pass.

As the authors' code (Cranial-XIX/FAMO, ``famo.py``) and LibMTL's (``weighting/FAMO.py``
with its trainer): ``m = 0`` (their ``min_losses``, never set), ``eps = 1e-8``, the
"after" losses from the same batch right after ``optimizer.step()``. Differences, on
purpose: the extra forward pass leaves the batch-norm running statistics as the step
left them (the references' also updates them, a second momentum step per batch); no
gradient clipping of its own (the authors' training scripts clip the shared parameters'
gradient to norm 1 for every method; LibMTL does not; here the experiment's ``grad_clip``
applies to every scheme alike).
``weights()`` reports ``z``; the total it reports for the logs is ``sum_t z_t L_t``.
"""
from __future__ import annotations

from typing import Annotated, Any, Callable, Sequence

import torch
from annotated_types import Ge, Gt
from torch import Tensor, nn

from ..tasks import TaskSpec
from ._base import LossWeighting, register_weighting, stack_losses

EPS = 1e-8  # the references' constant inside the log


@register_weighting("famo")
class FAMO(LossWeighting):
    """``w_lr`` (``famo_w_lr``): the learning rate of the task logits' Adam (the references'
    0.025); ``gamma`` (``famo_gamma``): its weight decay, which pulls the logits back
    towards equal weights (LibMTL's 1e-3, the authors' on NYUv2, CelebA and QM9; 1e-2 on
    Cityscapes)."""

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        *,
        w_lr: Annotated[float, Gt(0)] = 0.025,
        gamma: Annotated[float, Ge(0)] = 1e-3,
    ) -> None:
        super().__init__(tasks)
        self.w_lr = float(w_lr)
        self.gamma = float(gamma)
        n = len(self.task_names)
        self.w = nn.Parameter(torch.zeros(n))  # task logits, trained by their own optimiser below
        self.register_buffer("min_losses", torch.zeros(n))
        self.w_optimizer = torch.optim.Adam([self.w], lr=self.w_lr, weight_decay=self.gamma)
        self._before: Tensor | None = None  # this step's losses, until ``after_step``

    def _log_gap(self, losses: Tensor) -> Tensor:
        return (losses - self.min_losses + EPS).log()

    def combine(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        stacked = stack_losses(losses, self.task_names)
        z = torch.softmax(self.w.detach(), dim=0)
        gap = stacked - self.min_losses + EPS
        c = (z / gap).sum().detach()
        self._before = stacked.detach()
        return (z * gap.log() / c).sum()

    def backward(self, losses: dict[str, Tensor], model: nn.Module) -> Tensor:
        self.combine(losses, model).backward()
        z = torch.softmax(self.w.detach(), dim=0)
        return (z * stack_losses(losses, self.task_names).detach()).sum()

    @torch.no_grad()
    def after_step(self, losses_after: Callable[[], dict[str, Tensor]]) -> None:
        before, self._before = self._before, None
        if before is None or len(self.task_names) < 2:  # one task: z = 1 whatever w is
            return
        after = stack_losses(losses_after(), self.task_names).detach()
        delta = self._log_gap(before) - self._log_gap(after)
        z = torch.softmax(self.w, dim=0)
        self.w.grad = z * (delta - (z * delta).sum())  # J_softmax(w)^T delta (J is symmetric)
        self.w_optimizer.step()
        self.w.grad = None

    def param_groups(self) -> list[dict[str, Any]]:
        return []  # ``w`` has its own optimiser; the network's must not step it

    def get_extra_state(self) -> dict[str, Any]:
        return {"w_optimizer": self.w_optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.w_optimizer.load_state_dict(state["w_optimizer"])

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, torch.softmax(self.w.detach(), dim=0).tolist()))
