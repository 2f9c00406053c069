"""Model families: shapes, what is shared, cross-stitch semantics, the ensemble."""
from __future__ import annotations

import copy

import pytest
import torch

import mtl_models as mm
from mtl_models.families import split_point_partitions

from conftest import make_config, make_tasks

FAMILIES = ["hard_split", "cross_stitch", "single_task", "ensemble"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("kinds", [("classification",), ("classification", "regression")])
def test_forward_shapes(family: str, num_tasks: int, kinds: tuple[str, ...]) -> None:
    tasks = make_tasks(num_tasks, kinds)
    model = mm.build_model(make_config(family, tasks))
    out = model(torch.rand(5, 3, 8, 8))
    expected = [tasks[0]] if family == "single_task" else tasks
    assert sorted(out) == sorted(t["name"] for t in expected)
    for t in expected:
        assert out[t["name"]].shape == (5, t["classes"])


def _stage_params(stages: list[mm.Stage]) -> list[int]:
    return [sum(p.numel() for p in s.module.parameters()) for s in stages]


@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize("num_tasks", [2, 3])
def test_hard_split_shares_exactly_stages_before_k(k: int, num_tasks: int) -> None:
    tasks = make_tasks(num_tasks)
    config = make_config("hard_split", tasks, split_point=k)
    model = mm.build_model(config)
    per_stage = _stage_params(mm.build_backbone("small_cnn", 3, widths=[4, 6, 8]))
    heads = sum(p.numel() for p in model.heads.parameters())
    expected = sum(per_stage[:k]) + num_tasks * sum(per_stage[k:]) + heads
    assert mm.count_parameters(model) == expected
    assert [len(blocks) for blocks in model.blocks] == [1] * k + [num_tasks] * (3 - k)


def test_hard_split_gradients_flow_to_shared_stages_from_every_task() -> None:
    tasks = make_tasks(2)
    model = mm.build_model(make_config("hard_split", tasks, split_point=2))
    out = model(torch.rand(4, 3, 8, 8))
    for name in ("t0", "t1"):
        model.zero_grad()
        out = model(torch.rand(4, 3, 8, 8))
        out[name].sum().backward()
        shared_grad = model.blocks[0][0][0].weight.grad
        assert shared_grad is not None and shared_grad.abs().sum() > 0
        other = "t1" if name == "t0" else "t0"
        branch = model.blocks[2][model.task_names.index(other)][0].weight.grad
        assert branch is None or branch.abs().sum() == 0


def test_branches_must_not_merge() -> None:
    tasks = make_tasks(3)
    config = make_config("hard_split", tasks)
    bad = [[("t0",), ("t1", "t2")], [("t0", "t1"), ("t2",)], [("t0",), ("t1",), ("t2",)]]
    with pytest.raises(ValueError, match="never merge"):
        mm.build_branched(config, [mm.TaskSpec.from_dict(t) for t in tasks], lambda n: bad)


def test_split_point_partitions() -> None:
    assert split_point_partitions(["a", "b"], 3, 1) == [[("a", "b")], [("a",), ("b",)], [("a",), ("b",)]]


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_cross_stitch_identity_init_equals_independent_columns(num_tasks: int) -> None:
    """With alpha_same=1, alpha_diff=0 each column computes exactly its own single-task network."""
    tasks = make_tasks(num_tasks)
    model = mm.build_model(make_config("cross_stitch", tasks, alpha_same=1.0, alpha_diff=0.0)).eval()
    x = torch.rand(6, 3, 8, 8)
    out = model(x)
    for i, task in enumerate(model.task_names):
        column = torch.nn.Sequential(*model.columns[i], model.heads[task]).eval()
        expected = column((x - model.input_mean) / model.input_std)
        torch.testing.assert_close(out[task], expected, rtol=0, atol=0)


def test_cross_stitch_unit_mixes_per_channel() -> None:
    unit = mm.CrossStitchUnit(num_tasks=2, channels=3, alpha_same=0.9, alpha_diff=0.1)
    xa, xb = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    ya, yb = unit([xa, xb])
    torch.testing.assert_close(ya, 0.9 * xa + 0.1 * xb)
    torch.testing.assert_close(yb, 0.1 * xa + 0.9 * xb)
    with torch.no_grad():
        unit.alpha[0, 1, 2] = 0.5  # channel 2 of task A takes half of B
    ya, _ = unit([xa, xb])
    torch.testing.assert_close(ya[:, 2], 0.9 * xa[:, 2] + 0.5 * xb[:, 2])
    torch.testing.assert_close(ya[:, :2], 0.9 * xa[:, :2] + 0.1 * xb[:, :2])


def test_cross_stitch_units_have_their_own_learning_rate() -> None:
    tasks = make_tasks(2)
    config = make_config("cross_stitch", tasks, lr=0.01, lr_multiplier=250.0, cross_stitch_stages=[0, 2])
    model = mm.build_model(config)
    optimizer = mm.make_optimizer(model.param_groups(), config)
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs == pytest.approx([0.01, 2.5])
    assert sorted(model.units) == ["0", "2"]
    alpha_count = sum(p.numel() for p in optimizer.param_groups[1]["params"])
    assert alpha_count == 2 * 2 * 4 + 2 * 2 * 8  # (T, T, C) after stages 0 (4 ch) and 2 (8 ch)
    assert optimizer.param_groups[1]["weight_decay"] == 0.0


def test_ensemble_is_parameter_matched_and_averages_members() -> None:
    tasks = make_tasks(2)
    single = mm.build_model(make_config("single_task", tasks))
    ensemble = mm.build_model(make_config("ensemble", tasks))
    assert mm.count_parameters(ensemble) == 2 * 2 * mm.count_parameters(single)
    x = torch.rand(4, 3, 8, 8)
    ensemble.eval()
    members = ensemble.member_outputs(x)
    probs = torch.stack([m.softmax(1) for m in members["t0"]]).mean(0)
    torch.testing.assert_close(ensemble(x)["t0"].softmax(1), probs)


def test_ensemble_members_are_independent_networks() -> None:
    tasks = make_tasks(2)
    model = mm.build_model(make_config("ensemble", tasks, ensemble_size=3))
    a, b = model.members["t0"][0], model.members["t0"][1]
    assert len(model.members["t0"]) == 3
    assert not torch.equal(next(a.parameters()), next(b.parameters()))


def test_unknown_family_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="Unknown model family 'nope'; known model families: columns, cross_stitch, ensemble, hard_split, mmoe, mtan, ple, single_task"):
        mm.build_model(make_config("nope", make_tasks(2)))


def test_resnet18_stages_and_weights_from_local_file(tmp_path) -> None:
    import torchvision

    stages = mm.build_backbone("resnet18", 1)
    assert [s.name for s in stages] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert [s.out_channels for s in stages] == [64, 64, 128, 256, 512]
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    loaded = mm.build_backbone("resnet18", 3, weights=path)
    torch.testing.assert_close(loaded[1].module[0].conv1.weight, reference.layer1[0].conv1.weight)
    gray = mm.build_backbone("resnet18", 1, weights=path)
    torch.testing.assert_close(gray[0].module[0].weight, reference.conv1.weight.mean(1, keepdim=True))
    x = torch.rand(2, 1, 32, 32)
    for stage in gray:
        x = stage.module(x)
    assert x.shape == (2, 512, 1, 1)


@pytest.mark.parametrize("channels_last", [False, True])
def test_small_cnn_pools_before_its_relu_with_the_outputs_gradients_and_names_of_relu_then_pool(channels_last) -> None:
    """ReLU and max-pool commute; pooling first is the same network, bit for bit, and cheaper."""
    from torch import nn

    torch.manual_seed(0)
    stages = mm.build_backbone("small_cnn", 1, widths=[4, 8, 8])
    assert [type(m).__name__ for m in stages[0].module] == ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"]
    assert [type(m).__name__ for m in stages[-1].module] == ["Conv2d", "BatchNorm2d", "ReLU"]  # the last does not pool
    ours = nn.Sequential(*(s.module for s in stages))
    reference = nn.Sequential(*(  # the textbook order: conv-BN-ReLU-pool
        nn.Sequential(*m[:2], m[3], m[2]) if isinstance(m[-1], nn.ReLU) and len(m) == 4 else nn.Sequential(*m)
        for m in (copy.deepcopy(s.module) for s in stages)
    ))
    assert [type(m).__name__ for m in reference[0]] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert list(ours.state_dict()) == list(reference.state_dict())  # weights saved either way load
    x = torch.randn(16, 1, 20, 20)
    if channels_last:
        ours, reference = (m.to(memory_format=torch.channels_last) for m in (ours, reference))
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = ours(x), reference(x)
    assert torch.equal(a, b)
    a.square().sum().backward()
    b.square().sum().backward()
    for p, q in zip(ours.parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad)
    for u, v in zip(ours.state_dict().values(), reference.state_dict().values()):  # batch-norm statistics too
        assert torch.equal(u, v)


def test_wrong_weights_file_is_refused(tmp_path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"something": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="does not match the backbone"):
        mm.build_backbone("small_cnn", 3, weights=path)


def test_bundle_round_trip_reproduces_outputs(tmp_path) -> None:
    tasks = make_tasks(2, ("classification", "regression"))
    config = make_config("cross_stitch", tasks)
    model = mm.build_model(config).eval()
    x = torch.rand(3, 3, 8, 8)
    mm.save_bundle(model, config, tmp_path / "bundle", card={"note": "test"})
    loaded = mm.load(tmp_path / "bundle")
    assert not loaded.training
    for name, value in model(x).items():
        torch.testing.assert_close(loaded(x)[name], value)
    assert mm.load_config(tmp_path / "bundle") == config


@pytest.mark.parametrize("family, extra", [("cross_stitch", {}), ("cross_stitch", {"cross_stitch_stages": [0, 1]}),
                                           ("hard_split", {"split_point": 2})])
def test_every_task_loss_reaches_every_shared_parameter(family: str, extra: dict) -> None:
    """GradNorm compares the tasks' gradient norms on ``shared_parameters``: each task's loss must
    reach every one of them (on cross-stitch the last unit's alphas would not do: task i's loss
    reaches only its row i)."""
    tasks = make_tasks(3)
    model = mm.build_model(make_config(family, tasks, alpha_same=0.6, alpha_diff=0.2, **extra))
    shared = model.shared_parameters()
    assert shared
    x = torch.rand(6, 3, 8, 8)
    for task in model.task_names:
        grads = torch.autograd.grad(model(x)[task].pow(2).mean(), shared, allow_unused=True)
        assert all(g is not None and g.abs().sum() > 0 for g in grads), task
    if family == "cross_stitch":
        last = model.units[str(model.stitch_after[-1])].alpha
        row = torch.autograd.grad(model(x)["t0"].pow(2).mean(), last)[0]
        assert row[0].abs().sum() > 0 and row[1:].abs().sum() == 0  # why the alphas are not GradNorm's W


def test_a_config_line_lists_loss_weights_in_the_tasks_order_whatever_the_dict_order() -> None:
    tasks = [{"name": n} for n in ("digit", "parity", "loops", "ink")]
    weights = {"digit": 0.1, "ink": 0.4, "loops": 0.3, "parity": 0.2}  # sorted keys, as a JSON round trip gives
    line = mm.describe_config({"family": "hard_split", "split_point": 2, "tasks": tasks, "loss_weights": weights})
    assert line == "hard_split k=2 [w 0.10/0.20/0.30/0.40]"
