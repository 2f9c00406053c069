"""FAMO and DB-MTL against LibMTL's algorithms, written out here from its code
(``LibMTL/weighting/FAMO.py`` with the FAMO branch of ``LibMTL/trainer.py``, and
``LibMTL/weighting/DB_MTL.py`` with ``abstract_weighting.py``), on a tiny hard split
sharing its first stage, three classification tasks of different loss scales and three
fixed batches: each step through ``Trainer.train_step`` (the step every trial takes),
the reference on a copy of the same network with its own Adam; after every step the
gradients of every parameter and the schemes' weights agree to 1e-5 or tighter."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import mtl_models as mm

from conftest import make_config, random_data

# losses at initialisation near log 2, log 4, log 10: unequal scales, so dropping the log or
# the norm balancing changes the direction of the shared gradient, not only its length
TASKS = [{"name": f"t{i}", "kind": "classification", "classes": c, "loss": None, "metric": None}
         for i, c in enumerate((2, 4, 10))]
LR = 0.01


def setup(scheme: str, options: dict[str, float], split_point: int = 1) -> tuple[mm.Trainer, nn.Module, list]:
    """The trainer (constant rate, split after stage ``split_point - 1``), an untouched copy of
    its network and its first three training batches in a fixed order."""
    config = make_config("hard_split", TASKS, loss_weighting=scheme, lr=LR, lr_schedule="constant",
                         split_point=split_point, **{f"{scheme}_{k}": v for k, v in options.items()})
    mm.seed_everything(0)
    trainer = mm.Trainer(mm.build_model(config), random_data(TASKS), config)
    trainer.model.train()
    batches = list(trainer.feeds["train"].batches(16))[:3]
    return trainer, copy.deepcopy(trainer.model), batches


def task_losses(model: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> Tensor:
    return torch.stack(separate_losses(model, x, targets))


def separate_losses(model: nn.Module, x: Tensor, targets: dict[str, Tensor]) -> list[Tensor]:
    out = model(x)
    return [F.cross_entropy(out[t["name"]], targets[t["name"]]) for t in TASKS]


def assert_same_gradients(trainer: mm.Trainer, reference: nn.Module) -> None:
    for (name, p), q in zip(trainer.model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("options", [{}, {"w_lr": 0.1, "gamma": 0.01}])
def test_famo_follows_libmtl_over_three_steps(options: dict[str, float]) -> None:
    trainer, reference, batches = setup("famo", options)
    w_lr, gamma = options.get("w_lr", 0.025), options.get("gamma", 1e-3)  # LibMTL's FAMO_w_lr, FAMO_w_gamma
    # LibMTL FAMO.init_param + the first backward's learning rate and weight decay
    w = torch.zeros(len(TASKS), requires_grad=True)
    w_opt = torch.optim.Adam([w], lr=w_lr, weight_decay=gamma)
    min_losses = torch.zeros(len(TASKS))
    optimizer = torch.optim.Adam(reference.parameters(), lr=LR)
    trajectory = []
    for step, (x, targets) in enumerate(batches, 1):
        trainer.train_step(x, targets)

        optimizer.zero_grad(set_to_none=False)
        losses = task_losses(reference, x, targets)
        prev_losses = losses  # FAMO.backward
        z = F.softmax(w, -1)
        D = losses - min_losses + 1e-8
        c = (z / D).sum().detach()
        loss = (D.log() * z / c).sum()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # trainer.py: the same batch again, then FAMO.update_w
            curr_losses = task_losses(reference, x, targets)
        delta = (prev_losses - min_losses + 1e-8).log() - (curr_losses - min_losses + 1e-8).log()
        with torch.enable_grad():
            d = torch.autograd.grad(F.softmax(w, -1), w, grad_outputs=delta.detach())[0]
        w_opt.zero_grad(set_to_none=False)
        w.grad = d
        w_opt.step()

        assert_same_gradients(trainer, reference)
        torch.testing.assert_close(trainer.weighting.w.detach(), w.detach(), rtol=0, atol=1e-5)  # float noise in the
        # losses (~1e-7), amplified by Adam where a logit's gradient nearly cancels: ~2e-6 at most here
        ours = torch.tensor([trainer.weighting.weights()[t["name"]] for t in TASKS])
        torch.testing.assert_close(ours, F.softmax(w, -1).detach(), rtol=0, atol=1e-5)
        # the extra forward pass left the batch-norm statistics as the step left them
        assert all(int(b) == step for n, b in trainer.model.named_buffers() if n.endswith("num_batches_tracked"))
        trajectory.append(w.detach().clone())
    # the logits did move, unequally: the comparison is not of zeros
    assert (trajectory[-1] - trajectory[0]).abs().min() > 1e-3 and len(set(trajectory[-1].tolist())) == 3


def reached_by_two_losses(model: nn.Module, losses: list[Tensor]) -> list[nn.Parameter]:
    """The parameters two or more task losses reach (LibMTL's encoder parameters here)."""
    params = [p for p in model.parameters() if p.requires_grad]
    reached = [0] * len(params)
    for loss in losses:
        for i, g in enumerate(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)):
            reached[i] += g is not None
    return [p for p, n in zip(params, reached) if n >= 2]


@pytest.mark.parametrize("options, split_point", [
    ({}, 1),
    ({"beta": 0.8, "beta_sigma": 0.5}, 1),
    ({}, 2),  # two shared stages: both balanced (every parameter two or more losses reach)
])
def test_db_mtl_follows_libmtl_over_three_steps(options: dict[str, float], split_point: int) -> None:
    trainer, reference, batches = setup("db_mtl", options, split_point)
    beta, beta_sigma = options.get("beta", 0.9), options.get("beta_sigma", 0.0)  # LibMTL's DB_beta, DB_beta_sigma
    x0, y0 = batches[0]
    shared = reached_by_two_losses(reference, separate_losses(reference, x0, y0))
    assert 0 < len(shared) < len(list(reference.parameters()))
    grad_dim = sum(p.numel() for p in shared)
    grad_buffer = torch.zeros(len(TASKS), grad_dim)
    optimizer = torch.optim.Adam(reference.parameters(), lr=LR)
    for step, (x, targets) in enumerate(batches, 1):
        trainer.train_step(x, targets)

        optimizer.zero_grad(set_to_none=False)
        losses = task_losses(reference, x, targets)
        log_losses = torch.log(losses + 1e-8)
        batch_grads = torch.zeros(len(TASKS), grad_dim)
        for tn in range(len(TASKS)):  # _compute_grad(mode='backward'): task-specific grads accumulate
            log_losses[tn].backward(retain_graph=tn + 1 != len(TASKS))
            batch_grads[tn] = torch.cat([p.grad.view(-1) for p in shared])
            for p in shared:
                p.grad.zero_()
        grad_buffer = batch_grads + (beta / step**beta_sigma) * (grad_buffer - batch_grads)
        u_grad = grad_buffer.norm(dim=-1)
        alpha = u_grad.max() / (u_grad + 1e-8)
        new_grads = sum(alpha[i] * grad_buffer[i] for i in range(len(TASKS)))
        for p, g in zip(shared, new_grads.split([p.numel() for p in shared])):  # _reset_grad
            p.grad = g.view_as(p).clone()

        assert_same_gradients(trainer, reference)
        ours = torch.tensor([trainer.weighting.weights()[t["name"]] for t in TASKS])
        torch.testing.assert_close(ours, alpha / alpha.sum(), rtol=0, atol=1e-6)
        optimizer.step()
    assert alpha.max() / alpha.min() > 1.05  # the scales differ: the balancing is exercised


@pytest.mark.parametrize("scheme, options", [("famo", {}), ("db_mtl", {"db_mtl_beta_sigma": 0.5})])
def test_a_resumed_trial_continues_the_scheme_s_state(scheme: str, options: dict, tmp_path: Path) -> None:
    """FAMO's logits and their Adam moments, DB-MTL's moving average and step count (which
    sets its rate when ``beta_sigma > 0``) are in the checkpoint: a trial stopped after an
    epoch and resumed ends bit-identical to one that ran on."""
    config = make_config("hard_split", TASKS, loss_weighting=scheme, epochs=2, split_point=1, **options)
    data = random_data(TASKS)

    def fresh() -> mm.Trainer:
        mm.seed_everything(0)
        return mm.Trainer(mm.build_model(config), data, config)

    straight = fresh()
    straight.train_epoch()
    straight.train_epoch()
    first = fresh()
    first.train_epoch()
    mm.save_checkpoint_state(first.state_dict(), tmp_path)
    resumed = fresh()
    resumed.load_state_dict(mm.load_checkpoint_state(tmp_path))
    resumed.train_epoch()
    assert resumed.weighting.weights() == straight.weighting.weights()
    for key, value in straight.weighting.state_dict().items():
        if isinstance(value, Tensor):
            torch.testing.assert_close(resumed.weighting.state_dict()[key], value, rtol=0, atol=0)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    forgetful = fresh()  # the same, but the scheme starts over: the test can tell
    forgetful.load_state_dict({**mm.load_checkpoint_state(tmp_path), "weighting": fresh().weighting.state_dict()})
    forgetful.train_epoch()
    assert forgetful.weighting.weights() != straight.weighting.weights()


@pytest.mark.parametrize("family, extra", [("hard_split", {"split_point": 2}), ("cross_stitch", {}),
                                           ("mtan", {}), ("hard_split", {"split_point": 0})])
@pytest.mark.parametrize("scheme", ["famo", "db_mtl"])
def test_famo_and_db_mtl_train_every_family(scheme: str, family: str, extra: dict) -> None:
    tasks = TASKS[:2]
    config = make_config(family, tasks, loss_weighting=scheme, epochs=2, **extra)
    trainer = mm.Trainer(mm.build_model(config), random_data(tasks), config)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    for _ in range(2):
        losses = trainer.train_epoch()
    assert all(math.isfinite(v) for v in losses.values())
    weights = trainer.weighting.weights()
    assert set(weights) == {"t0", "t1"} and sum(weights.values()) == pytest.approx(1.0, abs=1e-6)
    if scheme == "famo" or extra.get("split_point") != 0:  # DB-MTL balances only what the tasks share
        assert weights["t0"] != pytest.approx(0.5, abs=1e-4)
    assert all(not torch.equal(a, b) for a, b in zip(trainer.model.parameters(), before) if a.requires_grad)
