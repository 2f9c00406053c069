"""Task kinds' losses and metrics, class weights, and the loss-weighting schemes."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import mtl_models as mm

from conftest import make_config, make_tasks, random_data


def metric(kind: str, classes, pred, target) -> dict[str, float]:
    spec = mm.TaskSpec("t", kind, classes)
    state = spec.kind_impl.metric_state(spec, torch.device("cpu"))
    state.update(pred, target)
    return state.compute()


def test_segmentation_miou_and_ignored_pixels() -> None:
    target = torch.tensor([[[0, 0], [1, -1]]])  # one unlabelled pixel
    pred = torch.zeros(1, 2, 2, 2)
    pred[0, 0] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # predicts class 0 at (0,0) and (1,1)
    pred[0, 1] = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    # labelled pixels: (0,0) 0->0, (0,1) 0->1, (1,0) 1->1; class0 IoU 1/2, class1 IoU 1/2
    assert metric("segmentation", 2, pred, target) == {"miou": pytest.approx(0.5), "pixel_accuracy": pytest.approx(2 / 3)}


def test_multilabel_map_f1_accuracy_with_missing() -> None:
    scores = torch.tensor([[3.0, -1.0], [2.0, 1.0], [-1.0, 2.0], [-2.0, -3.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, math.nan], [1.0, 1.0], [0.0, 0.0]])
    out = metric("multilabel", 2, scores, labels)
    # attribute 0: ranking 3(1) 2(0) -1(1) -2(0): AP = (1/1 + 2/3) / 2; attribute 1: only labelled positive ranked first: AP 1
    assert out["map"] == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)
    # predictions >0: a0: T T F F vs 1 0 1 0 -> tp1 fp1 fn1 -> f1 0.5; a1 (labelled rows 0,2,3): F T F vs 0 1 0 -> f1 1
    assert out["f1"] == pytest.approx(0.75)
    assert out["accuracy"] == pytest.approx(5 / 7)


def test_binary_kind_single_output() -> None:
    spec = mm.TaskSpec("smiling", "binary")
    head = spec.kind_impl.build_head(spec, 8)
    assert head(torch.rand(2, 8, 3, 3)).shape == (2, 1)
    loss = spec.kind_impl.loss(spec, torch.zeros(3, 1), torch.tensor([1.0, math.nan, 0.0]))
    assert loss.item() == pytest.approx(math.log(2))


def test_dense_regression_loss_and_metric_skip_nan_pixels() -> None:
    spec = mm.TaskSpec("depth", "dense_regression")
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[1.0, math.nan], [3.0, -1.0]]])
    assert spec.kind_impl.loss(spec, pred, target).item() == pytest.approx((1 + 3 + 1) / 3)
    assert metric("dense_regression", 1, pred, target)["mae"] == pytest.approx(5 / 3)


@pytest.mark.parametrize(
    "kind,classes,metric_name,better,worse",
    [
        ("classification", 3, "accuracy", 0.9, 0.8),
        ("binary", None, "accuracy", 0.9, 0.8),
        ("multilabel", 4, "map", 0.7, 0.6),
        ("regression", 1, "mae", 0.1, 0.2),
        ("segmentation", 3, "miou", 0.5, 0.4),
        ("dense_regression", 1, "mae", 0.3, 0.4),
    ],
)
def test_metric_direction_sets_the_sign_of_delta_m(kind, classes, metric_name, better, worse) -> None:
    spec = mm.TaskSpec("t", kind, classes)
    assert spec.metric_name == metric_name
    higher = {"t": spec.higher_is_better}
    assert mm.delta_m({"t": better}, {"t": worse}, higher) > 0
    assert mm.delta_m({"t": worse}, {"t": better}, higher) < 0


def test_balanced_class_weights() -> None:
    cls = mm.TaskSpec("c", "classification", 3)
    w = cls.kind_impl.balanced_weights(cls, torch.tensor([0, 0, 0, 1, -1, 2, 2, 2, 2, 2, 2, 2, 2]))
    # 12 labelled: counts 3, 1, 8 -> 12 / (3 * n_c)
    torch.testing.assert_close(w, torch.tensor([12 / 9, 12 / 3, 12 / 24]))
    attrs = mm.TaskSpec("a", "multilabel", 2)
    pos = attrs.kind_impl.balanced_weights(attrs, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, math.nan], [0.0, 1.0]]))
    torch.testing.assert_close(pos, torch.tensor([3.0, 2.0]))


def test_weighted_cross_entropy_matches_torch() -> None:
    spec = mm.TaskSpec("c", "classification", 3)
    pred, target = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, -1, 0])
    weight = torch.tensor([1.0, 2.0, 0.5])
    keep = target >= 0
    expected = nn.functional.cross_entropy(pred[keep], target[keep], weight=weight)
    torch.testing.assert_close(spec.kind_impl.loss(spec, pred, target, weight), expected)


def test_trainer_uses_balanced_weights() -> None:
    tasks = make_tasks(2)
    data = random_data(tasks)
    config = make_config("hard_split", tasks, class_weighting="balanced")
    trainer = mm.Trainer(mm.build_model(config), data, config)
    counts = torch.bincount(data.splits["train"].targets["t0"], minlength=4).float()
    torch.testing.assert_close(trainer.loss_weights["t0"], counts.sum() / (4 * counts))


# ---- loss weighting schemes -------------------------------------------------------


def optimise(weighting: mm.LossWeighting, losses: dict[str, float], steps: int = 400, lr: float = 0.05) -> None:
    optimizer = torch.optim.SGD([p for g in weighting.param_groups() for p in g["params"]], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        total = weighting.combine({k: torch.tensor(v) for k, v in losses.items()}, nn.Module())
        total.backward()
        optimizer.step()


def test_uncertainty_weighting_converges_to_the_inverse_loss() -> None:
    """Kendall et al.: at the optimum c_t exp(-s_t) = 1 / (2 L_t): the noisier task weighs less."""
    tasks = [{"name": "cls", "kind": "classification"}, {"name": "reg", "kind": "regression"}]
    weighting = mm.build_weighting(["cls", "reg"], {"loss_weighting": "uncertainty", "tasks": tasks})
    assert weighting.weights() == pytest.approx({"cls": 1.0, "reg": 0.5})
    optimise(weighting, {"cls": 2.0, "reg": 0.25}, steps=3000, lr=0.05)
    assert weighting.weights() == pytest.approx({"cls": 1 / 4, "reg": 2.0}, rel=1e-3)


def test_dwa_gives_more_weight_to_the_task_whose_loss_falls_slower() -> None:
    weighting = mm.build_weighting(["fast", "slow"], {"loss_weighting": "dwa", "dwa_temperature": 2.0})
    assert weighting.weights() == pytest.approx({"fast": 0.5, "slow": 0.5})
    weighting.end_epoch({"fast": 1.0, "slow": 1.0})
    assert weighting.weights() == pytest.approx({"fast": 0.5, "slow": 0.5})  # needs two epochs of history
    weighting.end_epoch({"fast": 0.5, "slow": 0.9})
    ratios = torch.tensor([0.5, 0.9]) / 2.0
    expected = torch.softmax(ratios, 0)
    assert weighting.weights() == pytest.approx({"fast": expected[0].item(), "slow": expected[1].item()})
    assert weighting.weights()["slow"] > weighting.weights()["fast"]


class TwoTaskNet(nn.Module):
    """A shared linear layer and two heads; task b's head is scaled to get 10x larger gradients."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(4, 4)
        self.a = nn.Linear(4, 1)
        self.b = nn.Linear(4, 1)
        with torch.no_grad():
            self.b.weight.mul_(10)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.shared.parameters())

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.relu(self.shared(x))
        return {"a": self.a(h).pow(2).mean(), "b": self.b(h).pow(2).mean() / 100}


def test_gradnorm_raises_the_weight_of_the_task_with_the_smaller_gradient() -> None:
    """Chen et al.: weights move to equalise the tasks' gradient norms at the shared layer."""
    net = TwoTaskNet()
    weighting = mm.build_weighting(["a", "b"], {"loss_weighting": "gradnorm", "gradnorm_alpha": 1.5})
    optimizer = torch.optim.SGD([weighting.w], lr=0.01)
    x = torch.randn(32, 4)
    for _ in range(50):
        optimizer.zero_grad()
        weighting.combine(net.losses(x), net)
        optimizer.step()
    weighting.combine(net.losses(x), net)  # renormalises
    w = weighting.weights()
    assert sum(w.values()) == pytest.approx(1.0)
    # b's loss is 100x smaller but its head 10x steeper: its gradient at the shared layer is the smaller one
    grads = {}
    for task, loss in net.losses(x).items():
        grads[task] = torch.autograd.grad(loss, net.shared.weight, retain_graph=True)[0].norm().item()
    small = min(grads, key=grads.get)
    assert w[small] > 0.5
    assert weighting.w.sum().item() == pytest.approx(2.0)


def test_gradnorm_leaves_equal_weights_without_shared_layers() -> None:
    weighting = mm.build_weighting(["a", "b"], {"loss_weighting": "gradnorm"})
    total = weighting.combine({"a": torch.tensor(1.0, requires_grad=True), "b": torch.tensor(3.0, requires_grad=True)}, nn.Module())
    assert total.item() == pytest.approx(4.0) and weighting.w.grad is None


@pytest.mark.parametrize("scheme", ["static", "uncertainty", "dwa", "gradnorm"])
def test_every_scheme_trains_a_model_and_reports_weights(scheme: str) -> None:
    tasks = make_tasks(2, ("classification", "regression"))
    config = make_config("hard_split", tasks, split_point=2, loss_weighting=scheme, epochs=3)
    trainer = mm.Trainer(mm.build_model(config), random_data(tasks), config)
    for _ in range(3):
        losses = trainer.train_epoch()
    assert all(math.isfinite(v) for v in losses.values())
    weights = trainer.weighting.weights()
    assert set(weights) == {"t0", "t1"} and all(w > 0 for w in weights.values())


def test_alternating_optimisation_updates_one_task_per_step() -> None:
    tasks = make_tasks(2)
    data = random_data(tasks, n=32)
    config = make_config("hard_split", tasks, split_point=0, optimization="alternating", batch_size=32, lr=0.1)
    model = mm.build_model(config)
    trainer = mm.Trainer(model, data, config)
    head0, head1 = [h[-1].weight.detach().clone() for h in (model.heads["t0"], model.heads["t1"])]
    trainer.train_epoch()  # one batch: task t0's turn
    assert not torch.equal(model.heads["t0"][-1].weight, head0)
    assert torch.equal(model.heads["t1"][-1].weight, head1)
