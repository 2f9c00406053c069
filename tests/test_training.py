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
    assert state.compute() == {"accuracy": pytest.approx(2 / 3), "f1": pytest.approx((1.0 + 0.0) / 2)}
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
    data.splits["train"].targets["t0"][:] = 1e30  # squared error overflows float32
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
