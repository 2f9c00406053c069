"""Uncertainty weighting, DWA and GradNorm against their papers and reference code, written
out here in plain torch, on a tiny hard split and fixed batches: each step through
``Trainer.train_step`` (or ``train_epoch``), the reference on a copy of the same network
with its own optimiser; weights and every gradient agree to 1e-6.

- Uncertainty (Kendall, Gal & Cipolla, CVPR 2018, eqs. 7 and 10, ``s = log sigma^2``):
  regression ``1/(2 sigma^2) L + log sigma = exp(-s) L / 2 + s / 2``, classification
  ``1/sigma^2 L + log sigma = exp(-s) L + s / 2``. lorenmt/mtan and LibMTL ``UW.py`` use the
  regression form for every task, starting at ``s = -0.5``: on regression tasks started
  there, ours is theirs.
- DWA (lorenmt/mtan ``utils.multi_task_trainer``, LibMTL ``DWA.py``): epochs 0 and 1 weight 1,
  then ``K exp(w_k / T) / sum_i exp(w_i / T)``, ``w_k`` the ratio of the last two epoch-mean
  training losses. Ours is that divided by ``K`` (weights sum to 1).
- GradNorm (Chen et al., ICML 2018, Algorithm 1): ``G_i = ||grad_W w_i L_i||`` at the last
  shared layer ``W``, ``r_i = (L_i / L_i(0)) / mean``, ``L_grad = sum |G_i - mean(G) r_i^alpha|``
  with the target constant, ``w`` stepped by ``grad_w L_grad``, the network by
  ``sum w_i L_i``, then ``w`` renormalised to sum ``T``.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import mtl_models as mm

from conftest import make_config, make_tasks, random_data

LR = 0.01


def setup(tasks: list[dict], scheme: str, split_point: int = 1, **extra: object) -> tuple[mm.Trainer, nn.Module, list]:
    """The trainer (Adam, constant rate), an untouched copy of its network, its first three
    training batches in a fixed order."""
    config = make_config("hard_split", tasks, loss_weighting=scheme, lr=LR, lr_schedule="constant",
                         split_point=split_point, **extra)
    mm.seed_everything(0)
    trainer = mm.Trainer(mm.build_model(config), random_data(tasks), config)
    trainer.model.train()
    batches = list(trainer.feeds["train"].batches(16))[:3]
    return trainer, copy.deepcopy(trainer.model), batches


def task_losses(trainer: mm.Trainer, model: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> Tensor:
    """Each task's loss on ``model`` (the task kinds' own losses: not what is tested here)."""
    losses = trainer.losses(model.member_outputs(x), targets)
    return torch.stack([losses[t] for t in trainer.model.task_names])


def assert_same_gradients(trainer: mm.Trainer, reference: nn.Module) -> None:
    for (name, p), q in zip(trainer.model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7, msg=lambda m: f"{name}: {m}")


# --- uncertainty weighting ------------------------------------------------------------

@pytest.mark.parametrize("kinds, start, form", [
    (("classification", "regression", "classification"), 0.0, "paper"),
    (("regression", "regression"), -0.5, "libmtl"),  # lorenmt/LibMTL's start, all regression: their code
])
def test_uncertainty_is_kendalls_over_three_steps(kinds: tuple[str, ...], start: float, form: str) -> None:
    tasks = make_tasks(len(kinds), kinds)
    trainer, reference, batches = setup(tasks, "uncertainty")
    assert trainer.weighting.log_var.tolist() == [0.0] * len(tasks)  # ours starts at sigma = 1
    with torch.no_grad():
        trainer.weighting.log_var.fill_(start)
    s = torch.full((len(tasks),), start, requires_grad=True)
    optimizer = torch.optim.Adam([{"params": reference.parameters()}, {"params": [s], "weight_decay": 0.0}], lr=LR)
    for x, targets in batches:
        trainer.train_step(x, targets)

        optimizer.zero_grad(set_to_none=False)
        losses = task_losses(trainer, reference, x, targets)
        if form == "libmtl":  # LibMTL UW.backward, verbatim
            loss = (losses / (2 * s.exp()) + s / 2).sum()
        else:  # the paper: eq. 7 for regression, eq. 10 for classification, s = log sigma^2
            loss = sum(
                (torch.exp(-s[i]) * losses[i] / 2 if kind == "regression" else torch.exp(-s[i]) * losses[i]) + s[i] / 2
                for i, kind in enumerate(kinds)
            )
        loss.backward()
        optimizer.step()

        assert_same_gradients(trainer, reference)
        torch.testing.assert_close(trainer.weighting.log_var.grad, s.grad, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(trainer.weighting.log_var.detach(), s.detach(), rtol=0, atol=1e-6)
    assert (s.detach() - start).abs().min() > 1e-3  # the log-variances moved: not a comparison of constants


# --- DWA ------------------------------------------------------------------------------

def dwa_reference(avg_cost: list[list[float]], index: int, temperature: float, K: int) -> list[float]:
    """lorenmt/mtan ``multi_task_trainer``'s ``lambda_weight[:, index]`` for ``K`` tasks
    (``avg_cost[e][k]``: task ``k``'s mean training loss in epoch ``e``)."""
    if index == 0 or index == 1:
        return [1.0] * K
    w = [avg_cost[index - 1][k] / avg_cost[index - 2][k] for k in range(K)]
    denominator = sum(torch.tensor(w_k / temperature, dtype=torch.float64).exp() for w_k in w)
    return [float(K * torch.tensor(w_k / temperature, dtype=torch.float64).exp() / denominator) for w_k in w]


@pytest.mark.parametrize("temperature", [2.0, 0.5])
def test_dwa_is_lorenmts_over_five_epochs(temperature: float) -> None:
    tasks = make_tasks(3)
    trainer, _, _ = setup(tasks, "dwa", dwa_temperature=temperature)
    names = trainer.model.task_names
    K = len(names)
    avg_cost: list[list[float]] = []
    for index in range(5):
        expected = dwa_reference(avg_cost, index, temperature, K)
        ours = [trainer.weighting.weights()[t] * K for t in names]  # ours sums to 1: the reference's / K
        torch.testing.assert_close(torch.tensor(ours, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                                   rtol=0, atol=1e-6)
        if index == 4:  # the weights are the ones the step's loss uses: its gradient is sum_k lambda_k / K L_k's
            reference = copy.deepcopy(trainer.model)
            x, targets = next(iter(trainer.feeds["train"].batches(16)))
            trainer.train_step(x, targets)
            loss = (torch.tensor(expected) / K * task_losses(trainer, reference, x, targets)).sum()
            loss.backward()
            assert_same_gradients(trainer, reference)
            assert max(expected) - min(expected) > 1e-3  # unequal weights: the check can tell them apart
            break
        result = trainer.train_epoch()
        avg_cost.append([result[f"loss/{t}"] for t in names])


# --- GradNorm -------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.5, 0.5])
def test_gradnorm_is_algorithm_1_over_three_steps(alpha: float) -> None:
    # three classification tasks of unequal loss scales (log 2, log 4, log 10 at the start)
    tasks = [{"name": f"t{i}", "kind": "classification", "classes": c, "loss": None, "metric": None}
             for i, c in enumerate((2, 4, 10))]
    trainer, reference, batches = setup(tasks, "gradnorm", split_point=2, gradnorm_alpha=alpha)
    T = len(tasks)
    W = list(reference.blocks[1].parameters())  # the last shared layer: stage 1, the deepest stage all tasks share
    w = torch.ones(T, requires_grad=True)  # w_i(0) = 1
    optimizer = torch.optim.Adam([{"params": reference.parameters()}, {"params": [w], "weight_decay": 0.0}], lr=LR)
    initial = None
    history = []
    for x, targets in batches:
        trainer.train_step(x, targets)

        optimizer.zero_grad(set_to_none=False)
        losses = task_losses(trainer, reference, x, targets)
        if initial is None:
            initial = losses.detach()  # L_i(0)
        # ||grad_W w_i L_i|| = w_i ||grad_W L_i|| (w_i > 0)
        g = torch.stack([torch.cat([d.flatten() for d in torch.autograd.grad(losses[i], W, retain_graph=True)]).norm()
                         for i in range(T)]).detach()
        G = w.detach() * g
        L_tilde = losses.detach() / initial
        r = L_tilde / L_tilde.mean()
        target = G.mean() * r**alpha  # held constant
        w_grad = torch.sign(G - target) * g  # d/dw_i sum_j |w_j g_j - target_j|
        (w.detach() * losses).sum().backward()
        w.grad = w_grad
        optimizer.step()
        with torch.no_grad():  # renormalise: sum_i w_i = T
            w.mul_(T / w.sum())

        assert_same_gradients(trainer, reference)
        torch.testing.assert_close(trainer.weighting.w.grad, w_grad, rtol=1e-6, atol=1e-7)
        ours = torch.tensor([trainer.weighting.weights()[t["name"]] for t in tasks])
        torch.testing.assert_close(ours, w.detach() / T, rtol=0, atol=1e-6)
        history.append(w.detach().clone())
    assert (history[-1] - 1).abs().min() > 1e-3  # the weights moved, each of them



class _OneSharedLayer(nn.Module):
    """A shared layer ``W`` (3,) and nothing else: task ``i``'s loss ``s_i W_i + b_i`` has the
    gradient norm ``s_i`` at ``W`` and any value the test picks."""

    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.ones(3))

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.W]


def test_gradnorm_weight_gradient_is_the_papers_on_either_side_of_every_threshold() -> None:
    """The L1 loss's gradient on ``w`` is ``sign(G_i - target_i) ||grad_W L_i||``: only a sign
    pattern, which a few training steps barely move. Here ``G = (2, 1, 0.6)`` and the loss
    ratios ``L / L(0) = (2, 1.5, 0.25)`` (``r = (1.6, 1.2, 0.2)``), so task 0's sign flips at ``alpha = log(G_0 / mean G) / log r_0
    = 1.087`` and task 2's at 0.431; swept over alpha in steps of 0.01, a target off by 1 %, an
    alpha off by 5 %, ratios not divided by their mean or a target that is not held constant
    gives another gradient somewhere."""
    names = ["a", "b", "c"]
    s = torch.tensor([2.0, 1.0, 0.6])  # ||grad_W L_i|| (w = 1: G_i)
    relative = torch.tensor([2.0, 1.5, 0.25])  # L_i / L_i(0)
    for alpha in torch.linspace(0, 3, 301).tolist():
        scheme = mm.weighting.build_weighting(names, {"loss_weighting": "gradnorm", "gradnorm_alpha": alpha})
        model = _OneSharedLayer()
        start = {t: s[i] * model.W[i] + (2.0 - s[i]) for i, t in enumerate(names)}  # L(0) = 2 each
        scheme.combine(start, model)
        b = 2.0 * relative - s  # losses 2 * relative: L / L(0) = relative
        scheme.combine({t: s[i] * model.W[i] + b[i] for i, t in enumerate(names)}, model)

        G = s  # w_i = 1 still: no optimiser step between the calls
        r = relative / relative.mean()
        target = G.mean() * r**alpha
        expected = torch.sign(G - target) * s
        torch.testing.assert_close(scheme.w.grad, expected, rtol=1e-6, atol=1e-7, msg=lambda m: f"alpha {alpha}: {m}")
