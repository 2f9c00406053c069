"""Cross-stitch units against the paper (Misra, Shrivastava, Gupta & Hebert, CVPR 2016) and
LibMTL's ``architecture/Cross_stitch.py``, written out here in plain torch.

The paper, eq. 1, per channel ``c`` of two task columns A and B::

    [x~_A]   [a_AA  a_AB] [x_A]
    [x~_B] = [a_BA  a_BB] [x_B]

(``T`` columns: ``x~_i = sum_j a_ij x_j``), initialised to ``a_same`` on the diagonal and
``a_diff`` off it (sec. 4: (0.9, 0.1), (0.5, 0.5) ...), trained by back-propagation (eq. 2:
``dL/da_ij = dL/dx~_i . x_j``) at a learning rate a multiple of the network's (sec. 4.1: 10^2
to 10^3 with SGD). LibMTL's unit is one scalar per task pair (``cross_unit[s][i][j] * rep[j]``,
summed over ``j``). The reference network runs the model's own columns and heads (copies: the
backbone is not what is tested) and its own ``alpha`` tensors with its own SGD; three steps
of ``Trainer.train_step`` must leave the same ``alpha`` and the same weights, to 1e-6.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor

import mtl_models as mm

from conftest import make_config, make_tasks, random_data

LR, MULTIPLIER, WEIGHT_DECAY = 0.01, 100.0, 1e-3
STAGES = [0, 1]  # units after stages 0 and 1 of the 3-stage CNN (4 and 6 channels); none after stage 2


def paper_init(num_tasks: int, channels: int, same: float, diff: float) -> Tensor:
    """``alpha[i][j][c]``: ``same`` where ``i == j``, ``diff`` elsewhere, every channel."""
    return torch.tensor([[[same if i == j else diff] * channels for j in range(num_tasks)] for i in range(num_tasks)])


def stitch(xs: list[Tensor], alpha: Tensor, unit: str) -> list[Tensor]:
    """Eq. 1 per channel (``channel``), or LibMTL's ``sum(cross_unit[tn][j] * rep[j])`` (``scalar``)."""
    T = len(xs)
    if unit == "scalar":
        return [sum(alpha[i][j] * xs[j] for j in range(T)) for i in range(T)]
    return [sum(alpha[i][j].view(1, -1, 1, 1) * xs[j] for j in range(T)) for i in range(T)]


@pytest.mark.parametrize("channels_last", [False, True])  # the units' elementwise path keeps the layout
@pytest.mark.parametrize("unit", ["channel", "scalar"])
@pytest.mark.parametrize("num_tasks, same, diff", [(2, 0.9, 0.1), (3, 0.6, 0.2)])
def test_cross_stitch_is_the_papers_over_three_sgd_steps(
    unit: str, num_tasks: int, same: float, diff: float, channels_last: bool
) -> None:
    tasks = make_tasks(num_tasks)
    config = make_config("cross_stitch", tasks, cross_stitch_unit=unit, cross_stitch_stages=STAGES,
                         alpha_same=same, alpha_diff=diff, lr_multiplier=MULTIPLIER, optimizer="sgd",
                         momentum=0.9, lr=LR, lr_schedule="constant", weight_decay=WEIGHT_DECAY,
                         channels_last=channels_last)
    mm.seed_everything(0)
    model = mm.build_model(config)
    trainer = mm.Trainer(model, random_data(tasks), config)
    model.train()
    batches = list(trainer.feeds["train"].batches(16))[:3]

    columns, heads = copy.deepcopy(model.columns), copy.deepcopy(model.heads)
    channels = {s: [m for m in columns[0][s].modules() if isinstance(m, torch.nn.Conv2d)][-1].out_channels for s in STAGES}
    alpha = {}
    for s in STAGES:
        init = paper_init(num_tasks, channels[s], same, diff)
        alpha[s] = (init[:, :, 0].clone() if unit == "scalar" else init).requires_grad_()
    start = {s: a.detach().clone() for s, a in alpha.items()}
    network = [p for m in (columns, heads) for p in m.parameters()]
    optimizer = torch.optim.SGD([  # the units at lr x multiplier, without weight decay (ours; see the README)
        {"params": network, "lr": LR, "weight_decay": WEIGHT_DECAY},
        {"params": list(alpha.values()), "lr": LR * MULTIPLIER, "weight_decay": 0.0},
    ], momentum=0.9)
    names = model.task_names

    for step, (x, targets) in enumerate(batches):
        trainer.train_step(x, targets)

        optimizer.zero_grad(set_to_none=False)
        xs = [(x - model.input_mean) / model.input_std] * num_tasks
        seen: dict[int, tuple[list[Tensor], list[Tensor]]] = {}
        for s in range(len(columns[0])):
            xs = [column[s](xi) for column, xi in zip(columns, xs)]
            if s in alpha:
                if channels_last:  # the model's unit leaves channels-last activations in their layout
                    assert all(m.is_contiguous(memory_format=torch.channels_last) and not m.is_contiguous()
                               for m in model.units[str(s)]([xi.detach() for xi in xs]))
                mixed = stitch(xs, alpha[s], unit)
                for m in mixed:
                    m.retain_grad()
                seen[s] = ([xi.detach() for xi in xs], mixed)
                xs = mixed
        losses = trainer.losses({t: [heads[t](xi)] for t, xi in zip(names, xs)}, targets)
        loss = sum(losses[t] / num_tasks for t in names)  # static weights, 1/T each
        loss.backward()
        for s, (inputs, mixed) in seen.items():  # eq. 2: dL/da_ij[c] = sum over batch and space of dL/dx~_i[c] x_j[c]
            grad = torch.stack([torch.stack([(mixed[i].grad * inputs[j]).sum(dim=(0, 2, 3)) for j in range(num_tasks)])
                                for i in range(num_tasks)])
            expected = grad.sum(-1) if unit == "scalar" else grad
            torch.testing.assert_close(alpha[s].grad, expected, rtol=1e-5, atol=1e-7)
            ours = model.units[str(s)].alpha.grad
            torch.testing.assert_close(ours, alpha[s].grad, rtol=1e-6, atol=1e-7, msg=lambda m: f"step {step}, unit {s}: {m}")
        optimizer.step()

        for s in STAGES:
            torch.testing.assert_close(model.units[str(s)].alpha.detach(), alpha[s].detach(), rtol=0, atol=1e-6)
        for (name, p), q in zip([*model.columns.named_parameters(), *model.heads.named_parameters()], network):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-6, msg=lambda m: f"step {step}, {name}: {m}")

    for s in STAGES:  # the units moved at the multiplied rate: the comparison is not of their initial values
        assert (alpha[s].detach() - start[s]).abs().max() > 1e-2
