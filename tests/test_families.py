"""Soft-sharing families beyond cross-stitch's channel units: scalar and NDDR units, MTAN.

Exact parameter counts on the tiny 3-stage CNN (4, 6, 8 channels; 8x8 RGB inputs),
what each unit computes at its initialisation, gradients, and the round trip through
a bundle, TorchScript and ONNX.
"""
from __future__ import annotations

import pytest
import torch

import mtl_models as mm

from conftest import make_config, make_tasks

WIDTHS = (4, 6, 8)


def _column_and_heads(tasks: list[dict]) -> tuple[int, int]:
    """Parameters of one backbone column and of all heads (the hard split at 0's share)."""
    single = mm.build_model(make_config("hard_split", tasks, split_point=0))
    heads = sum(p.numel() for p in single.heads.parameters())
    return (mm.count_parameters(single) - heads) // len(tasks), heads


@pytest.mark.parametrize("num_tasks", [2, 3, 4])
@pytest.mark.parametrize("unit", ["channel", "scalar", "nddr"])
def test_cross_stitch_unit_granularities_count_exactly(unit: str, num_tasks: int) -> None:
    tasks = make_tasks(num_tasks, ("classification", "regression"))
    model = mm.build_model(make_config("cross_stitch", tasks, cross_stitch_unit=unit))
    column, heads = _column_and_heads(tasks)
    t = num_tasks
    per_unit = {
        "channel": lambda c: t * t * c,  # one alpha per task pair and channel
        "scalar": lambda c: t * t,  # one per task pair
        "nddr": lambda c: t * (t * c * c + 2 * c),  # per task a 1x1 conv of the T*C concatenation, and BN
    }[unit]
    assert mm.count_parameters(model) == t * column + heads + sum(per_unit(c) for c in WIDTHS)
    out = model(torch.rand(5, 3, 8, 8))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        spec["name"]: (5, 4 if spec["kind"] == "classification" else 2) for spec in tasks
    }
    for alpha in model.alphas().values():
        assert alpha.shape[:2] == (t, t)
        torch.testing.assert_close(alpha[0, 0], torch.full_like(alpha[0, 0], 0.9))  # alpha_same of make_config
        torch.testing.assert_close(alpha[0, 1], torch.full_like(alpha[0, 1], 0.1))


@pytest.mark.parametrize("unit", ["channel", "scalar", "nddr"])
def test_identity_units_leave_the_columns_independent(unit: str) -> None:
    """alpha (1, 0): every unit passes each column through (NDDR's batch norm is the identity at
    initialisation in eval mode with its epsilon set to 0 here, and its ReLU sees non-negative features)."""
    tasks = make_tasks(2)
    stitched = mm.build_model(make_config("cross_stitch", tasks, cross_stitch_unit=unit, alpha_same=1.0, alpha_diff=0.0)).eval()
    for module in stitched.units.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 0.0  # MTL-NAS's 1e-3 would scale by 1/sqrt(1.001)
    separate = mm.build_model(make_config("cross_stitch", tasks, cross_stitch_stages=[])).eval()
    separate.load_state_dict({k: v for k, v in stitched.state_dict().items() if not k.startswith("units.")})
    x = torch.rand(4, 3, 8, 8)
    for task, value in separate(x).items():
        torch.testing.assert_close(stitched(x)[task], value, rtol=1e-4, atol=1e-4)


def test_nddr_learns_more_than_the_channel_diagonal() -> None:
    tasks = make_tasks(2)
    model = mm.build_model(make_config("cross_stitch", tasks, cross_stitch_unit="nddr"))
    unit = model.units["1"]
    off_diagonal = unit.fuse[0].weight.view(6, 12)[0, 1]  # channel 1 of column 0 into channel 0 of task 0
    assert off_diagonal.item() == 0.0
    grad = torch.autograd.grad(model(torch.rand(6, 3, 8, 8))["t0"].pow(2).mean(), unit.fuse[0].weight)[0]
    assert grad.view(6, 12)[0, 1].item() != 0.0  # the fusion can move off the diagonal; a cross-stitch unit cannot


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("stages", [None, [0], [1], []])
def test_mtan_counts_exactly_and_always_attends_the_last_stage(num_tasks: int, stages) -> None:
    tasks = make_tasks(num_tasks, ("classification", "regression"))
    model = mm.build_model(make_config("mtan", tasks, mtan_stages=stages))
    attended = sorted(set(range(3) if stages is None else stages) | {2})
    assert model.attended == attended
    column, heads = _column_and_heads(tasks)
    masks, blocks, previous = 0, 0, None
    for s in attended:
        c = WIDTHS[s]
        inputs = c if previous is None else 2 * c
        masks += (inputs * c + c) + 2 * c + (c * c + c) + 2 * c  # per task: two 1x1 convs with biases, two batch norms
        if previous is not None:
            blocks += WIDTHS[previous] * c * 9 + c + 2 * c  # once for all tasks: a 3x3 conv with bias, batch norm
        previous = s
    assert mm.count_parameters(model) == column + heads + num_tasks * masks + blocks
    out = model(torch.rand(5, 3, 8, 8))
    assert [tuple(v.shape) for v in out.values()] == [(5, 4 if s["kind"] == "classification" else 2) for s in tasks]


def test_mtan_tasks_attend_differently_and_share_the_backbone() -> None:
    tasks = make_tasks(2)
    model = mm.build_model(make_config("mtan", tasks))
    x = torch.rand(6, 3, 8, 8)
    for task in ("t0", "t1"):
        grads = torch.autograd.grad(model(x)[task].pow(2).mean(), model.shared_parameters())
        assert all(g.abs().sum() > 0 for g in grads)  # GradNorm's W: every task reaches it
        other = "t1" if task == "t0" else "t0"
        mine = torch.autograd.grad(model(x)[task].pow(2).mean(), list(model.attention["2"][other].parameters()),
                                   allow_unused=True)
        assert all(g is None or g.abs().sum() == 0 for g in mine)  # a task's loss never moves another's attention
    with pytest.raises(ValueError, match=r"mtan_stages \[5\] out of range; stages are 0..2"):
        mm.build_model(make_config("mtan", tasks, mtan_stages=[5]))


@pytest.mark.parametrize("family, extra", [("mtan", {"mtan_stages": [1]}), ("cross_stitch", {"cross_stitch_unit": "nddr"}),
                                           ("cross_stitch", {"cross_stitch_unit": "scalar"}),
                                           ("mmoe", {"mmoe_experts": 2}), ("ple", {"ple_levels": 2, "ple_gate": "pooled"})])
def test_new_families_export_and_reload(tmp_path, family: str, extra: dict) -> None:
    import onnxruntime

    tasks = make_tasks(2, ("classification", "regression"))
    config = make_config(family, tasks, **extra)
    torch.manual_seed(0)
    model = mm.build_model(config).eval()
    bundle = mm.save_bundle(model, config, tmp_path / "bundle", exports=["torchscript", "onnx"])
    x = torch.rand(3, 3, 8, 8)
    expected = model(x)
    loaded = mm.load(bundle)
    scripted = torch.jit.load(str(bundle / "model.ts"))
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"))
    served = session.run(None, {"images": x.numpy()})
    for i, task in enumerate(model.task_names):
        torch.testing.assert_close(loaded(x)[task], expected[task], rtol=0, atol=0)
        torch.testing.assert_close(scripted(x)[i], expected[task])
        torch.testing.assert_close(torch.from_numpy(served[i]), expected[task], rtol=1e-4, atol=1e-5)
    cost = mm.measure_cost(model, config["input"], batch_size=4, repeats=1)
    assert cost.params == mm.count_parameters(model) and cost.flops > 0


def test_every_task_loss_reaches_the_shared_parameters_of_each_unit_kind() -> None:
    tasks = make_tasks(3)
    for unit in ("scalar", "nddr"):
        model = mm.build_model(make_config("cross_stitch", tasks, cross_stitch_unit=unit, alpha_same=0.6, alpha_diff=0.2))
        x = torch.rand(6, 3, 8, 8)
        for task in model.task_names:
            grads = torch.autograd.grad(model(x)[task].pow(2).mean(), model.shared_parameters())
            assert all(g.abs().sum() > 0 for g in grads), (unit, task)
