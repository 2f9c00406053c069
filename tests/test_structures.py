"""Sharing trees, cross-stitch placement and initialisation, torchvision backbones, dense heads."""
from __future__ import annotations

import pytest
import torch

import mtl_models as mm
from mtl_models.families import describe_tree, partitions_from_config

from conftest import make_config, make_tasks

WIDTHS = [4, 6, 8]


def stage_sizes() -> list[int]:
    return [sum(p.numel() for p in s.module.parameters()) for s in mm.build_backbone("small_cnn", 3, widths=WIDTHS)]


def heads_size(model) -> int:
    return sum(p.numel() for p in model.heads.parameters())


@pytest.mark.parametrize(
    "points,copies",
    [
        ({"t0": 1, "t1": 1, "t2": 1}, [1, 3, 3]),  # = a single split point
        ({"t0": 0, "t1": 2, "t2": 3}, [2, 2, 3]),  # t0 apart from the start; {t1,t2} share two stages
        ({"t0": 3, "t1": 3, "t2": 3}, [1, 1, 1]),
        ({"t0": 2, "t1": 2, "t2": 0}, [2, 2, 3]),
    ],
)
def test_per_task_split_points_share_exactly_the_trunk(points: dict, copies: list[int]) -> None:
    tasks = make_tasks(3)
    model = mm.build_model(make_config("hard_split", tasks, split_points=points))
    assert [len(b) for b in model.blocks] == copies
    sizes = stage_sizes()
    assert mm.count_parameters(model) == sum(n * c for n, c in zip(sizes, copies)) + heads_size(model)


def test_grouped_tree_shares_a_branch_within_a_group() -> None:
    tasks = make_tasks(4)
    config = make_config(
        "hard_split",
        tasks,
        split_point=1,
        task_groups={"t0": "a", "t1": "a", "t2": "b", "t3": "c"},
        group_split_points={"a": 3, "b": 0, "c": 2},  # b's limit is below the trunk: b splits at 1
    )
    parts = partitions_from_config(config, ["t0", "t1", "t2", "t3"], 3)
    assert parts == [
        [("t0", "t1", "t2", "t3")],
        [("t0", "t1"), ("t2",), ("t3",)],
        [("t0", "t1"), ("t2",), ("t3",)],
    ]
    model = mm.build_model(config)
    sizes = stage_sizes()
    assert mm.count_parameters(model) == sizes[0] + 3 * sizes[1] + 3 * sizes[2] + heads_size(model)
    assert describe_tree(parts, ["conv1", "conv2", "conv3"]) == "conv1: {t0,t1,t2,t3} | conv2-conv3: {t0,t1} {t2} {t3}"


def test_explicit_branches() -> None:
    tasks = make_tasks(3)
    branches = [[["t0", "t1", "t2"]], [["t0", "t1"], ["t2"]], [["t0"], ["t1"], ["t2"]]]
    model = mm.build_model(make_config("hard_split", tasks, branches=branches))
    assert [len(b) for b in model.blocks] == [1, 2, 3]
    out = model(torch.rand(2, 3, 8, 8))
    assert set(out) == {"t0", "t1", "t2"}


def test_tree_errors_name_the_key() -> None:
    tasks = make_tasks(2)
    with pytest.raises(ValueError, match=r"split_points: \[7\] outside 0..3"):
        mm.build_model(make_config("hard_split", tasks, split_points={"t0": 7, "t1": 1}))
    with pytest.raises(ValueError, match="branches: 1 stages given, the backbone has 3"):
        mm.build_model(make_config("hard_split", tasks, branches=[[["t0", "t1"]]]))


def test_cross_stitch_on_a_subset_of_stages() -> None:
    tasks = make_tasks(2)
    model = mm.build_model(make_config("cross_stitch", tasks, cross_stitch_stages=[1]))
    assert list(model.units) == ["1"]
    shared = {id(p) for p in model.shared_parameters()}  # the stage before the unit, in every column
    assert shared == {id(p) for column in model.columns for p in column[1].parameters()}
    none = mm.build_model(make_config("cross_stitch", tasks, cross_stitch_stages=[]))
    assert len(none.units) == 0 and none.shared_parameters() == []


def test_cross_stitch_columns_start_from_single_task_networks() -> None:
    """With identity units, columns initialised from single-task nets reproduce their outputs."""
    tasks = make_tasks(2, ("classification", "regression"))
    singles = {}
    for t in tasks:
        mm.seed_everything(hash(t["name"]) % 100)
        singles[t["name"]] = mm.build_model(make_config("single_task", tasks, task=t["name"])).eval()
    stitched = mm.build_model(make_config("cross_stitch", tasks, alpha_same=1.0, alpha_diff=0.0)).eval()
    stitched.init_columns_from(singles)
    x = torch.rand(3, 3, 8, 8)
    out = stitched(x)
    for name, single in singles.items():
        torch.testing.assert_close(out[name], single(x)[name], rtol=0, atol=0)
    column = stitched.columns[0][0][0].weight
    torch.testing.assert_close(column, singles["t0"].blocks[0][0][0].weight)


BACKBONES = ["resnet18", "resnet34", "squeezenet1_1", "mobilenet_v3_small", "vgg11_bn", "alexnet"]


@pytest.mark.parametrize("name", BACKBONES)
def test_torchvision_backbones_as_stages(name: str) -> None:
    tasks = make_tasks(2)
    stages = mm.build_backbone(name, 3)
    k = len(stages) - 1
    config = make_config("hard_split", tasks, backbone={"name": name, "weights": None, "options": {}},
                         input={"channels": 3, "height": 64, "width": 64}, split_point=k)
    model = mm.build_model(config).eval()
    out = model(torch.rand(2, 3, 64, 64))
    assert out["t0"].shape == (2, 4)
    sizes = [sum(p.numel() for p in s.module.parameters()) for s in stages]
    assert mm.count_parameters(model) == sum(sizes[:k]) + 2 * sizes[k] + heads_size(model)


def test_seed_002_squeezenet_split_after_fire8() -> None:
    names = mm.stage_names("squeezenet1_1")
    assert names.index("fire8") + 1 == 8  # split_point 8 shares conv1..fire8, fire9 per task
    tasks = make_tasks(2)
    config = make_config("hard_split", tasks, backbone={"name": "squeezenet1_1", "weights": None, "options": {}},
                         input={"channels": 3, "height": 64, "width": 64}, split_point=8)
    model = mm.build_model(config)
    assert [len(b) for b in model.blocks] == [1] * 8 + [2]


def test_alexnet_fc_stages_output_vectors_and_cross_stitch_mixes_them() -> None:
    stages = mm.build_backbone("alexnet", 3)
    assert [s.name for s in stages][-2:] == ["fc6", "fc7"] and not stages[-1].spatial
    unit = mm.CrossStitchUnit(2, 5, 0.5, 0.5)
    a, b = torch.rand(3, 5), torch.rand(3, 5)
    torch.testing.assert_close(unit([a, b])[0], 0.5 * a + 0.5 * b)


DENSE = [
    {"name": "seg", "kind": "segmentation", "classes": 3, "loss": None, "metric": None},
    {"name": "depth", "kind": "dense_regression", "classes": 1, "loss": None, "metric": None},
    {"name": "label", "kind": "classification", "classes": 4, "loss": None, "metric": None},
]


@pytest.mark.parametrize("family", ["hard_split", "cross_stitch", "ensemble"])
def test_dense_heads_give_per_pixel_outputs_of_the_input_size(family: str) -> None:
    config = make_config(family, DENSE, input={"channels": 3, "height": 12, "width": 10})
    out = mm.build_model(config).eval()(torch.rand(2, 3, 12, 10))
    assert out["seg"].shape == (2, 3, 12, 10)
    assert out["depth"].shape == (2, 1, 12, 10)
    assert out["label"].shape == (2, 4)


def test_dense_head_needs_a_spatial_stage() -> None:
    config = make_config("hard_split", DENSE[:1], backbone={"name": "alexnet", "weights": None, "options": {}},
                         input={"channels": 3, "height": 64, "width": 64}, split_point=7)
    with pytest.raises(ValueError, match="needs a spatial last stage"):
        mm.build_model(config)
