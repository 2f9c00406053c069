"""Losses, metrics and missing labels; the trainer's determinism and resume."""
from __future__ import annotations

from typing import Any

import math

import pytest
import torch
import torch.nn.functional as F

import mtl_models as mm

from conftest import make_config, make_tasks, random_data

CLS = mm.TaskSpec("c", "classification", 3)
REG = mm.TaskSpec("r", "regression", 2)


def test_classification_loss_ignores_missing_labels() -> None:
    pred = torch.randn(5, 3)
    target = torch.tensor([0, -1, 2, -1, 1])
    labelled = target >= 0
    expected = F.cross_entropy(pred[labelled], target[labelled])
    torch.testing.assert_close(CLS.kind_impl.loss(CLS, pred, target), expected)


def test_regression_loss_ignores_nan_entries() -> None:
    pred = torch.randn(4, 2)
    target = torch.tensor([[1.0, math.nan], [0.5, 2.0], [math.nan, math.nan], [3.0, -1.0]])
    valid = ~torch.isnan(target)
    expected = F.mse_loss(pred[valid], target[valid])
    torch.testing.assert_close(REG.kind_impl.loss(REG, pred, target), expected)


@pytest.mark.parametrize("spec,target", [(CLS, torch.full((4,), -1)), (REG, torch.full((4, 2), math.nan))])
def test_all_missing_batch_gives_zero_loss_with_a_gradient_path(spec: mm.TaskSpec, target: torch.Tensor) -> None:
    pred = torch.randn(4, spec.kind_impl.output_dim(spec), requires_grad=True)
    loss = spec.kind_impl.loss(spec, pred, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_metrics_count_only_labelled_rows() -> None:
    state = CLS.kind_impl.metric_state(CLS, torch.device("cpu"))
    pred = torch.eye(3)[[0, 1, 2, 0]] * 5  # predicts 0, 1, 2, 0
    state.update(pred, torch.tensor([0, 2, -1, 0]))  # right, wrong, missing, right
    # macro-F1 over the classes labelled or predicted: class 0 F1 1, class 1 (predicted, never labelled) 0,
    # class 2 (labelled, never predicted) 0; torchmetrics and scikit-learn agree (the old mean skipped class 1: 0.5)
    assert state.compute() == {"accuracy": pytest.approx(2 / 3), "f1": pytest.approx((1.0 + 0.0 + 0.0) / 3)}
    reg = REG.kind_impl.metric_state(REG, torch.device("cpu"))
    reg.update(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, math.nan]]))
    assert reg.compute() == {"mae": pytest.approx(1.0), "rmse": pytest.approx(1.0)}


def test_missing_labels_of_one_task_do_not_affect_the_other() -> None:
    """Training with task t1 fully unlabelled gives t0 the same gradients as a t0-only model."""
    tasks = make_tasks(2)
    data = random_data(tasks)
    for split in data.splits.values():
        split.targets["t1"] = torch.full_like(split.targets["t1"], -1)
    config = make_config("hard_split", tasks, split_point=0, loss_weights={"t0": 0.5, "t1": 0.5})
    mm.seed_everything(0)
    model = mm.build_model(config)
    trainer = mm.Trainer(model, data, config)
    before = [p.detach().clone() for p in model.blocks[0][1].parameters()]  # t1's branch
    losses = trainer.train_epoch()
    assert losses["loss/t1"] == 0.0 and losses["loss/t0"] > 0.0
    after = list(model.blocks[0][1].parameters())
    # t1's column gets no gradient; Adam with zero gradients leaves weights unchanged
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_trainer_is_deterministic_and_resumes_exactly(tmp_path) -> None:
    tasks = make_tasks(2, ("classification", "regression"))
    data = random_data(tasks)
    config = make_config("cross_stitch", tasks, epochs=3)

    def fresh() -> mm.Trainer:
        mm.seed_everything(0)
        return mm.Trainer(mm.build_model(config), data, config)

    straight = fresh()
    for _ in range(3):
        straight.train_epoch()
    resumed = fresh()
    resumed.train_epoch()
    mm.save_checkpoint_state(resumed.state_dict(), tmp_path)
    restarted = fresh()
    restarted.load_state_dict(mm.load_checkpoint_state(tmp_path))
    assert restarted.epoch == 1
    for _ in range(2):
        restarted.train_epoch()
    assert straight.evaluate() == restarted.evaluate()
    for a, b in zip(straight.model.state_dict().values(), restarted.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_non_finite_loss_raises() -> None:
    tasks = make_tasks(2, ("regression",))
    data = random_data(tasks)
    data.splits["train"].targets["t0"][:2] = float("inf")  # an infinite label: the loss cannot be finite
    config = make_config("hard_split", tasks)
    trainer = mm.Trainer(mm.build_model(config), data, config)
    with pytest.raises(mm.NonFiniteLossError, match="loss/t0"):
        trainer.train_epoch()


def test_static_weights_are_normalised_and_applied() -> None:
    weighting = mm.build_weighting(["a", "b"], {"loss_weights": {"a": 3.0, "b": 1.0}})
    assert weighting.weights() == pytest.approx({"a": 0.75, "b": 0.25})
    total = weighting.combine({"a": torch.tensor(2.0), "b": torch.tensor(4.0)}, torch.nn.Module())
    assert total.item() == pytest.approx(0.75 * 2 + 0.25 * 4)
    assert mm.build_weighting(["a", "b", "c"], {}).weights() == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


@pytest.mark.parametrize(
    "metrics,baseline,higher,expected",
    [
        ({"a": 0.9, "b": 0.8}, {"a": 0.9, "b": 0.8}, {"a": True, "b": True}, 0.0),
        ({"a": 0.99}, {"a": 0.9}, {"a": True}, 10.0),
        ({"e": 0.9}, {"e": 1.0}, {"e": False}, 10.0),  # lower error is better: positive
        ({"a": 0.81, "e": 1.1}, {"a": 0.9, "e": 1.0}, {"a": True, "e": False}, -10.0),
        ({"a": math.nan}, {"a": 0.9}, {"a": True}, math.nan),
    ],
)
def test_delta_m(metrics, baseline, higher, expected) -> None:
    value = mm.delta_m(metrics, baseline, higher)
    assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)


def _one_epoch(**speed: Any) -> tuple[dict[str, float], dict, mm.Trainer]:
    tasks = make_tasks(2, ("classification", "regression"))
    config = make_config("cross_stitch", tasks, **speed)
    torch.manual_seed(0)
    trainer = mm.Trainer(mm.build_model(config), random_data(tasks), config, device="cpu")
    return trainer.train_epoch(), trainer.evaluate(), trainer


def test_speed_settings_change_speed_not_what_is_learned() -> None:
    reference, ref_val, plain = _one_epoch(precision="fp32")
    assert plain.autocast is None and not plain.channels_last  # auto on CPU: fp32, default layout
    bf16, bf16_val, trainer = _one_epoch(precision="bf16")
    assert trainer.autocast is torch.bfloat16
    assert bf16["loss"] != reference["loss"]  # autocast really ran in bf16 ...
    assert bf16["loss"] == pytest.approx(reference["loss"], rel=0.05)  # ... and learned the same
    assert bf16_val["t1"]["mae"] == pytest.approx(ref_val["t1"]["mae"], rel=0.15)
    layout, layout_val, trainer = _one_epoch(channels_last=True)
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert layout["loss"] == pytest.approx(reference["loss"], rel=1e-4)
    assert layout_val["t0"] == pytest.approx(ref_val["t0"], rel=1e-4)


def test_compiled_training_matches_eager() -> None:
    reference, _, _ = _one_epoch(precision="fp32")
    compiled, _, trainer = _one_epoch(precision="fp32", compile=True)
    assert trainer._forward is not trainer.model.member_outputs
    assert compiled["loss"] == pytest.approx(reference["loss"], rel=1e-4)
    assert all(k in trainer.state_dict()["model"] for k in trainer.model.state_dict())  # no _orig_mod prefixes


# ---------------------------------------------------------------- learning-rate schedules


@pytest.mark.parametrize(
    "name, warmup, expected",
    [
        ("constant", 0, [1.0] * 8),
        ("cosine", 0, [0.5 * (1 + math.cos(math.pi * s / 7)) for s in range(8)]),  # 1 down to 0 at the last step
        ("cosine", 2, [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * s / 5)) for s in range(6)]),
        ("step", 0, [1.0] * 4 + [0.1] * 2 + [0.01] * 2),  # milestones at 50 % and 75 % of 8 steps
    ],
)
def test_schedule_factors(name: str, warmup: int, expected: list[float]) -> None:
    schedule = mm.LRSchedule(name, total=8, warmup=warmup)
    assert [schedule(s) for s in range(8)] == pytest.approx(expected, abs=1e-12)


def test_trainer_steps_the_schedule_per_batch_and_ends_near_zero() -> None:
    tasks = make_tasks(2)
    data = random_data(tasks, n=48)  # batch 16: 3 steps per epoch
    config = make_config("cross_stitch", tasks, epochs=2, lr=0.01, lr_multiplier=10.0)
    trainer = mm.Trainer(mm.build_model(config), data, config)
    seen = []
    step = trainer.optimizer.step

    def record(*args, **kwargs):
        seen.append([g["lr"] for g in trainer.optimizer.param_groups])
        return step(*args, **kwargs)

    trainer.optimizer.step = record
    for _ in range(2):
        trainer.train_epoch()
    factors = [0.5 * (1 + math.cos(math.pi * s / 5)) for s in range(6)]
    assert [lrs[0] for lrs in seen] == pytest.approx([0.01 * f for f in factors])
    assert [lrs[1] for lrs in seen] == pytest.approx([0.1 * f for f in factors])  # the units' group, x10
    assert seen[-1][0] == pytest.approx(0.0, abs=1e-12)


def test_ensemble_and_trials_evaluate_in_the_same_precision() -> None:
    """evaluate_model (the ensemble's path) gives exactly what a trial's trainer reports, in bf16 too."""
    tasks = make_tasks(2)
    data = random_data(tasks)
    for precision in ("fp32", "bf16"):
        config = make_config("hard_split", tasks, precision=precision, epochs=1)
        trainer = mm.Trainer(mm.build_model(config), data, config)
        trainer.train_epoch()
        assert mm.evaluate_model(trainer.model, data, config) == trainer.evaluate("val")


# ---------------------------------------------------------------- regression in label units


def _regression_data(scale: float, n: int = 64) -> mm.MultiTaskData:
    g = torch.Generator().manual_seed(0)
    splits = {}
    for name in ("train", "val"):
        images = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
        ink = images.float().mean(dim=(1, 2, 3)) / 255.0  # a fraction near 0.5 with a small spread
        splits[name] = mm.Split(images, {"c": torch.randint(0, 3, (n,), generator=g), "r": ink * scale})
    specs = [mm.TaskSpec("c", "classification", 3), mm.TaskSpec("r", "regression", 1)]
    return mm.MultiTaskData(specs, splits, description="ink")


def test_regression_heads_learn_the_same_whatever_the_label_units() -> None:
    """Labels in other units (x1000) give the same training (losses in label std units) and
    predictions in those units: the loss balance between tasks does not depend on units."""
    tasks = [{"name": "c", "kind": "classification", "classes": 3, "loss": None, "metric": None},
             {"name": "r", "kind": "regression", "classes": 1, "loss": None, "metric": None}]
    config = make_config("hard_split", tasks, split_point=2, epochs=2)
    trained = {}
    for scale in (1.0, 1000.0):
        mm.seed_everything(0)
        trainer = mm.Trainer(mm.build_model(config), _regression_data(scale), config)
        losses = [trainer.train_epoch() for _ in range(2)]
        trained[scale] = (trainer, losses)
    (small, small_losses), (large, large_losses) = trained[1.0], trained[1000.0]
    for a, b in zip(small_losses, large_losses):
        assert a == pytest.approx(b, rel=1e-4)
    x = torch.rand(5, 3, 8, 8)
    torch.testing.assert_close(large.model.eval()(x)["r"], 1000 * small.model.eval()(x)["r"], rtol=1e-3, atol=1e-3)
    scale = next(m for m in small.model.modules() if isinstance(m, mm.tasks.TargetScale))
    targets = small.feeds["train"].split.targets["r"]
    assert scale.mean.item() == pytest.approx(targets.mean().item(), rel=1e-5)
    assert scale.std.item() == pytest.approx(targets.std(unbiased=False).item(), rel=1e-5)
    assert {k for k in small.model.state_dict() if "mean" in k or "std" in k} >= {"heads.r.1.mean", "heads.r.1.std"}
