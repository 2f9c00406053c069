"""Gradient aggregators (torchjd) as loss-weighting schemes: each changes the update of the
shared parameters the way its method defines, checked on gradients whose aggregate is known
by hand; the task-specific parameters see their own loss only."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import mtl_models as mm

from conftest import make_config, make_tasks, random_data

CONFLICT = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # g1 . g2 = -1
ORTHOGONAL = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # no conflict, norms 1 and 2


class Linear2(nn.Module):
    """Loss_i = g_i . theta + h_i^2 / 2: the Jacobian on the shared theta is exactly the rows g_i.
    It does not declare which parameters the tasks share: the aggregators find theta in the
    autograd graph (as for a plugin family)."""

    def __init__(self, gradients: torch.Tensor) -> None:
        super().__init__()
        self.g = gradients
        self.theta = nn.Parameter(torch.zeros(2))
        self.heads = nn.ParameterList([nn.Parameter(torch.tensor(0.3)), nn.Parameter(torch.tensor(-0.7))])

    def losses(self) -> dict[str, torch.Tensor]:
        return {f"t{i}": self.g[i] @ self.theta + 0.5 * self.heads[i] ** 2 for i in range(2)}

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.theta]


def aggregate(scheme: str, gradients: torch.Tensor, **options) -> tuple[torch.Tensor, torch.Tensor]:
    model = Linear2(gradients)
    config = {"loss_weighting": scheme, **{f"{scheme}_{k}": v for k, v in options.items()}}
    weighting = mm.build_weighting(["t0", "t1"], config)
    weighting.backward(model.losses(), model)
    return model.theta.grad, torch.stack([h.grad for h in model.heads])


def unit(g: torch.Tensor) -> torch.Tensor:
    return g / g.norm()


def test_pcgrad_removes_the_conflicting_components() -> None:
    d, _ = aggregate("pcgrad", CONFLICT)
    # g1 - (g1.g2/|g2|^2) g2 = [0.5, 0.5];  g2 - (g2.g1/|g1|^2) g1 = [0, 1]; summed
    torch.testing.assert_close(d, torch.tensor([0.5, 1.5]))


@pytest.mark.parametrize("gradients, expected", [(CONFLICT, [0.2, 0.4]), (ORTHOGONAL, [0.8, 0.4])])
def test_mgda_takes_the_min_norm_convex_combination(gradients: torch.Tensor, expected: list[float]) -> None:
    d, _ = aggregate("mgda", gradients)
    torch.testing.assert_close(d, torch.tensor(expected), rtol=1e-3, atol=1e-4)
    a = torch.linspace(0, 1, 10001)
    norms = (a[:, None] * gradients[0] + (1 - a[:, None]) * gradients[1]).norm(dim=1)
    assert d.norm().item() == pytest.approx(norms.min().item(), abs=1e-4)


def test_upgrad_is_the_mean_without_conflict_and_never_raises_a_loss_with_one() -> None:
    d, _ = aggregate("upgrad", ORTHOGONAL)
    torch.testing.assert_close(d, ORTHOGONAL.mean(dim=0), rtol=1e-3, atol=1e-4)
    d, _ = aggregate("upgrad", CONFLICT)
    assert (CONFLICT @ d).min().item() >= -1e-5  # the mean [0, .5] is orthogonal to g1; UPGrad moves off it
    assert (CONFLICT @ d).min().item() > (CONFLICT @ CONFLICT.mean(dim=0)).min().item()


def test_cagrad_is_the_mean_at_c_0_and_helps_the_worst_task_within_its_ball() -> None:
    d0, _ = aggregate("cagrad", CONFLICT, c=0.0)
    mean = CONFLICT.mean(dim=0)
    torch.testing.assert_close(d0, mean, rtol=1e-3, atol=1e-4)
    d, _ = aggregate("cagrad", CONFLICT, c=0.5)
    assert (d - mean).norm().item() <= 0.5 * mean.norm().item() + 1e-4
    assert (CONFLICT @ d).min().item() > (CONFLICT @ mean).min().item() + 0.1


def test_imtlg_projects_equally_onto_every_task_direction() -> None:
    d, _ = aggregate("imtlg", CONFLICT)
    projections = [float(d @ unit(g)) for g in CONFLICT]
    assert projections[0] == pytest.approx(projections[1], rel=1e-3) and projections[0] > 0


@pytest.mark.parametrize("scheme", ["aligned_mtl", "nash_mtl"])
def test_aligned_mtl_and_nash_mtl_balance_orthogonal_gradients_of_unequal_norm(scheme: str) -> None:
    """On orthogonal gradients both give each task the same progress along its own direction
    (Aligned-MTL: condition number 1; Nash-MTL: alpha_i = 1/|g_i|), unlike the mean."""
    d, _ = aggregate(scheme, ORTHOGONAL)
    projections = [float(d @ unit(g)) for g in ORTHOGONAL]
    assert projections[0] == pytest.approx(projections[1], rel=1e-3) and projections[0] > 0
    mean = ORTHOGONAL.mean(dim=0)
    assert float(mean @ unit(ORTHOGONAL[0])) != pytest.approx(float(mean @ unit(ORTHOGONAL[1])))


@pytest.mark.parametrize("scheme", ["upgrad", "pcgrad", "cagrad", "mgda", "imtlg", "aligned_mtl", "nash_mtl"])
def test_task_specific_parameters_see_only_their_own_loss(scheme: str) -> None:
    _, heads = aggregate(scheme, CONFLICT)
    torch.testing.assert_close(heads, torch.tensor([0.3, -0.7]))  # d(h_i^2/2)/dh_i, nothing else


@pytest.mark.parametrize("family, extra", [("hard_split", {"split_point": 2}), ("cross_stitch", {}),
                                           ("mtan", {}), ("hard_split", {"split_point": 0})])
@pytest.mark.parametrize("scheme", ["upgrad", "mgda", "nash_mtl"])
def test_aggregators_train_every_family(scheme: str, family: str, extra: dict) -> None:
    tasks = make_tasks(2, ("classification", "regression"))
    config = make_config(family, tasks, loss_weighting=scheme, epochs=2, **extra)
    trainer = mm.Trainer(mm.build_model(config), random_data(tasks), config)
    before = [p.detach().clone() for p in trainer.model.shared_parameters()]
    losses = [trainer.train_epoch() for _ in range(2)]
    assert all(math.isfinite(v) for v in losses[-1].values())
    weights = trainer.weighting.weights()
    assert set(weights) == {"t0", "t1"} and sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    after = trainer.model.shared_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(after, before))  # the shared layers did move


def test_a_resumed_trial_continues_nash_mtl_where_it_stopped(tmp_path) -> None:
    """torchjd's Nash-MTL keeps a step counter and the previous weights (re-used between solves,
    ``update_every``); they travel in the checkpoint, so a restored trainer's next steps give the
    same weights and gradients as an uninterrupted run. 32 samples / 16 = 2 steps an epoch,
    a solve every 3: epoch 2 starts at step 2, which re-uses step 0's weights (a restart at
    step 0 would solve afresh)."""
    tasks = make_tasks(2, ("classification", "regression"))
    data = random_data(tasks, n=32)
    config = make_config("hard_split", tasks, split_point=2, loss_weighting="nash_mtl", nash_mtl_update_every=3)

    def fresh() -> tuple[mm.Trainer, list[torch.Tensor]]:
        mm.seed_everything(0)
        trainer = mm.Trainer(mm.build_model(config), data, config)
        steps: list[torch.Tensor] = []
        backward = trainer.weighting.backward

        def recorded(losses, model):
            total = backward(losses, model)
            steps.append(torch.cat([trainer.weighting.last.clone()] + [p.grad.flatten().clone() for p in model.parameters()]))
            return total

        trainer.weighting.backward = recorded
        return trainer, steps

    straight, straight_steps = fresh()
    for _ in range(2):
        straight.train_epoch()
    first, _ = fresh()
    first.train_epoch()
    mm.save_checkpoint_state(first.state_dict(), tmp_path)
    restarted, restarted_steps = fresh()
    restarted.load_state_dict(mm.load_checkpoint_state(tmp_path))
    restarted.train_epoch()
    assert len(restarted_steps) == 2
    for a, b in zip(straight_steps[2:], restarted_steps):  # weights, then every parameter's gradient
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(straight.model.state_dict().values(), restarted.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
