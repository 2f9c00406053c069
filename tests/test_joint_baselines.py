"""Baselines as one model per seed, and configs that are one config.

The joint single-task baselines (family ``columns``: every task's network side by side,
losses summed at weight 1) are checked against single-task networks trained one by one
as a ``single_task`` trial trains them (seeded, then built, then trained by the same
Trainer): with deterministic algorithms on CPU every weight and every metric is equal,
bit for bit, with missing labels and class weights, under Adam and SGD. The reference is
the plain single-task training loop, not the columns code.

A hard split that shares nothing learns the same whatever its static loss weights under
Adam/AdamW (each column's update is invariant to its loss scale up to Adam's eps), not
under SGD or Adam with L2 weight decay: trained here and compared.
"""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import mtl_models as mm
from search._baselines import column_config, joint_config

from conftest import make_config, make_tasks, random_data


@pytest.fixture()
def deterministic():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


def _data_with_missing_labels(tasks: list[dict[str, Any]]) -> mm.MultiTaskData:
    """Random data; task 0 misses every third label, task 1 (regression) every fourth row."""
    data = random_data(tasks, n=40)
    for split in data.splits.values():
        split.targets["t0"][::3] = -1
        split.targets["t1"][1::4] = math.nan
    return data


def _train(config: dict[str, Any], data: mm.MultiTaskData) -> tuple[mm.MultiTaskModel, dict]:
    """What a trial does: seed, build, train every epoch, evaluate."""
    mm.seed_everything(int(config["seed"]))
    model = mm.build_model(config)
    trainer = mm.Trainer(model, data, config)
    for _ in range(int(config["epochs"])):
        trainer.train_epoch()
    return model, trainer.evaluate("val")


def _fixed(optimizer: str, **extra: Any) -> dict[str, Any]:
    tasks = make_tasks(3, ("classification", "regression"))
    config = make_config("hard_split", tasks, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01,
                         class_weighting="balanced", loss_weighting="static",
                         loss_weights={t["name"]: 1 / 3 for t in tasks}, epochs=2, batch_size=8, **extra)
    for key in ("family", "split_point", "seed"):
        config.pop(key)
    return config


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_joint_columns_are_the_separately_trained_single_task_networks(optimizer: str, deterministic) -> None:
    fixed = _fixed(optimizer, weight_decay=1e-3)
    data = _data_with_missing_labels(fixed["tasks"])
    joint = joint_config(fixed, [t["name"] for t in fixed["tasks"]], member=1, seed=7)
    model, metrics = _train(joint, data)
    for spec in fixed["tasks"]:
        task = spec["name"]
        single_config = column_config(joint, task)
        # the config a separate baseline trial of this task and seed has: fixed's own keys
        assert single_config == {**fixed, "family": "single_task", "task": task, "ensemble_member": 1, "seed": 7}
        single, single_metrics = _train(single_config, data)
        expected, got = single.state_dict(), model.column(task).state_dict()
        assert list(got) == list(expected)
        assert all(torch.equal(got[k], expected[k]) for k in expected), task  # bit for bit
        assert metrics[task] == single_metrics[task]
        loaded = mm.build_model(single_config)
        loaded.load_state_dict(got)  # a column's checkpoint is a single-task network's


def test_joint_columns_differ_when_a_column_is_not_trained_at_single_task_scale(deterministic) -> None:
    """The equality above can fail: losses averaged (1/T each, static's default) under SGD
    train each column at a third of its single-task step."""
    fixed = _fixed("sgd")
    data = _data_with_missing_labels(fixed["tasks"])
    joint = {**joint_config(fixed, [t["name"] for t in fixed["tasks"]], member=0, seed=7), "static_normalise": True}
    model, _ = _train(joint, data)
    single, _ = _train(column_config(joint, "t0"), data)
    got, expected = model.column("t0").state_dict(), single.state_dict()
    assert max((got[k] - expected[k]).abs().max().item() for k in expected if expected[k].is_floating_point()) > 1e-3


def _k0_weights(optimizer: str, weights: dict[str, float], **extra: Any) -> dict[str, torch.Tensor]:
    tasks = make_tasks(2)
    config = make_config("hard_split", tasks, split_point=0, optimizer=optimizer, loss_weights=weights,
                         lr=0.05 if optimizer == "sgd" else 0.01, epochs=2, batch_size=8, **extra)
    model, _ = _train(config, random_data(tasks, n=40))
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


@pytest.mark.parametrize(
    ("optimizer", "extra", "invariant"),
    [
        ("adam", {}, True),
        ("adamw", {"weight_decay": 0.1}, True),  # decoupled decay: not part of the gradient
        ("adam", {"weight_decay": 0.1}, False),  # L2 in the gradient: c g + wd w is no rescaling
        ("sgd", {}, False),  # the step is proportional to the loss scale
        ("adam", {"grad_clip": 0.01}, False),  # one global norm over both columns
    ],
)
def test_static_weights_change_a_network_that_shares_nothing_only_where_the_key_says(
    optimizer: str, extra: dict[str, Any], invariant: bool, deterministic
) -> None:
    a = _k0_weights(optimizer, {"t0": 0.8, "t1": 0.2}, **extra)
    b = _k0_weights(optimizer, {"t0": 0.3, "t1": 0.7}, **extra)
    gap = max((a[k] - b[k]).abs().max().item() for k in a)
    # Invariant up to Adam's eps (a loss scaled by c acts as eps / c) and rounding: parameters
    # with near-zero gradients (a conv before batch norm) move by a little, 1.3e-4 here,
    # against 0.01 per Adam step (lr) and 4e-2 to 8e-2 apart under SGD
    assert (gap < 1e-3) if invariant else (gap > 1e-2), gap
    keys = [mm.config_key(make_config("hard_split", make_tasks(2), split_point=0, optimizer=optimizer,
                                      loss_weights=w, **extra)) for w in ({"t0": 0.8, "t1": 0.2}, {"t0": 0.3, "t1": 0.7})]
    assert (keys[0] == keys[1]) == invariant


def _k0(**extra: Any) -> dict[str, Any]:
    return make_config("hard_split", make_tasks(3), **{"split_point": 0, "loss_weights": {"t0": 0.5, "t1": 0.3, "t2": 0.2},
                                                        **extra})


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        # one tree, written three ways: nothing shared
        (_k0(), _k0(split_point=None, tree="per_task", split_points={"t0": 0, "t1": 0, "t2": 0}), True),
        (_k0(), _k0(task_groups={"t0": 0, "t1": 0, "t2": 1}, group_split_points={"0": 0, "1": 0}), True),
        (_k0(), _k0(split_point=1), False),
        (_k0(task_groups={"t0": 0, "t1": 0, "t2": 1}, group_split_points={"0": 2, "1": 0}), _k0(), False),
        (_k0(), _k0(loss_weights={"t0": 0.1, "t1": 0.1, "t2": 0.8}), True),
        (_k0(), _k0(loss_weights={"t0": 0.0005, "t1": 0.4995, "t2": 0.5}), False),  # eps / c no longer negligible
        (_k0(), _k0(loss_weighting="uncertainty"), False),
        (_k0(split_point=2), _k0(split_point=2, loss_weights={"t0": 0.1, "t1": 0.1, "t2": 0.8}), False),
        # alternating optimisation never uses the static weights, whatever is shared
        (_k0(split_point=2, optimization="alternating"),
         _k0(split_point=2, optimization="alternating", loss_weights={"t0": 0.1, "t1": 0.1, "t2": 0.8}), True),
        (_k0(), _k0(lr=0.02), False),
        (_k0(), _k0(seed=5), True),  # the seed is not the config
    ],
)
def test_config_key_is_one_key_per_network_and_training(a: dict, b: dict, same: bool) -> None:
    assert (mm.config_key(a) == mm.config_key(b)) == same


@pytest.mark.parametrize(("optimizer", "same"), [("adam", True), ("adamw", True), ("sgd", False)])
def test_a_k0_config_at_the_baselines_settings_is_the_joint_baselines_config(optimizer: str, same: bool) -> None:
    fixed = {k: v for k, v in _k0(optimizer=optimizer).items() if k not in ("family", "split_point", "seed")}
    baseline = joint_config(fixed, ["t0", "t1", "t2"], member=2, seed=2)
    searched = {**fixed, "family": "hard_split", "tree": "single", "split_point": 0,
                "loss_weights": {"t0": 0.2, "t1": 0.2, "t2": 0.6}, "seed": 2}
    assert (mm.config_key(searched) == mm.config_key(baseline)) == same
    assert mm.config_key({**searched, "lr": 0.5}) != mm.config_key(baseline)  # other training settings
