"""The procedural scenes generator: targets that agree with the pixels, determinism, validation."""
from __future__ import annotations

import pytest
import torch

import mtl_models as mm
from mtl_models.data import check_scene_tasks, generate_scenes
from mtl_models.data._scenes import COLOURS, SHAPES

IMAGE_TASKS = [
    mm.TaskSpec("shape", "classification", 4),
    mm.TaskSpec("colour", "classification", 6),
    mm.TaskSpec("size", "regression"),
    mm.TaskSpec("position", "regression", 2),
    mm.TaskSpec("count", "classification", 3),
]


@pytest.fixture(scope="module")
def scenes() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return generate_scenes(256, 32, 48, max_objects=3, noise=0.0, seed=5)


def test_shapes_and_dtypes(scenes) -> None:
    images, targets = scenes
    assert images.shape == (256, 3, 32, 48) and images.dtype == torch.uint8
    assert {k: (tuple(v.shape), v.dtype) for k, v in targets.items()} == {
        "colour": ((256,), torch.long),
        "shape": ((256,), torch.long),
        "size": ((256,), torch.float32),
        "position": ((256, 2), torch.float32),
        "count": ((256,), torch.long),
        "mask": ((256, 32, 48), torch.long),
        "depth": ((256, 1, 32, 48), torch.float32),
    }
    assert set(targets["count"].tolist()) == {0, 1, 2}
    assert set(targets["mask"].unique().tolist()) == set(range(len(SHAPES) + 1))
    assert targets["depth"].max() == 1.0 and targets["depth"].min() > 0.0


def test_targets_agree_with_the_pixels_at_the_main_object(scenes) -> None:
    images, targets = scenes
    x = (targets["position"][:, 0] * 48).long().clamp(max=47)
    y = (targets["position"][:, 1] * 32).long().clamp(max=31)
    rows = torch.arange(256)
    assert torch.equal(targets["mask"][rows, y, x], targets["shape"] + 1)
    palette = torch.tensor(list(COLOURS.values()))
    pixel = images[rows, :, y, x].float() / 255  # shaded, so compare hue: nearest normalised colour
    nearest = torch.cdist(pixel / pixel.norm(dim=1, keepdim=True), palette / palette.norm(dim=1, keepdim=True)).argmin(1)
    assert torch.equal(nearest, targets["colour"])
    assert ((targets["depth"][rows, 0, y, x] >= 0.39) & (targets["depth"][rows, 0, y, x] <= 0.8)).all()  # the main object's depth
    visible = (targets["mask"] > 0).flatten(1).sum(1)
    assert (visible >= (targets["size"] * 32) ** 2).all()  # at least the area of a square of side r


def test_deterministic_in_the_seed_and_splits_independent() -> None:
    a = mm.load_data("scenes", IMAGE_TASKS, n_train=64, n_val=32, n_test=0, image_size=16, seed=1)
    b = mm.load_data("scenes", IMAGE_TASKS, n_train=128, n_val=32, n_test=0, image_size=16, seed=1)
    c = mm.load_data("scenes", IMAGE_TASKS, n_train=64, n_val=32, n_test=0, image_size=16, seed=2)
    assert torch.equal(a.splits["val"].images, b.splits["val"].images)  # n_train does not move val
    assert not torch.equal(a.splits["val"].images, c.splits["val"].images)
    again = mm.load_data("scenes", IMAGE_TASKS, n_train=64, n_val=32, n_test=0, image_size=16, seed=1)
    assert torch.equal(a.splits["train"].images, again.splits["train"].images)
    assert all(torch.equal(a.splits["train"].targets[t], again.splits["train"].targets[t]) for t in a.splits["train"].targets)


def test_missing_rate_hides_train_labels_only() -> None:
    data = mm.load_data("scenes", IMAGE_TASKS[:3], n_train=400, n_val=50, n_test=0, image_size=16, missing_rate={"shape": 0.5, "size": 0.25})
    summary = data.label_summary()
    assert 0.4 < summary["train/shape"]["missing_rate"] < 0.6
    assert 0.15 < summary["train/size"]["missing_rate"] < 0.35
    assert summary["val/shape"]["missing_rate"] == 0.0 and summary["train/colour"]["missing_rate"] == 0.0


def test_count_can_be_regressed() -> None:
    data = mm.load_data("scenes", [mm.TaskSpec("count", "regression"), IMAGE_TASKS[0]], n_train=50, n_val=20, n_test=0, image_size=16)
    assert set(data.splits["train"].targets["count"].tolist()) <= {1.0, 2.0, 3.0}


@pytest.mark.parametrize(
    "spec,message",
    [
        (mm.TaskSpec("colur", "classification", 6), "scenes has no task 'colur'; allowed: colour, shape, size, position, count, mask, depth"),
        (mm.TaskSpec("shape", "regression"), "scenes task 'shape' is kind classification, not 'regression'"),
        (mm.TaskSpec("shape", "classification", 3), "scenes task 'shape' has 4 classes; set classes: 4 (got 3)"),
        (mm.TaskSpec("position", "regression"), "scenes task 'position' has 2 values; set classes: 2 (got None)"),
        (mm.TaskSpec("count", "classification", 5), "scenes task 'count' has 3 classes; set classes: 3 (got 5)"),
    ],
)
def test_tasks_are_checked(spec: mm.TaskSpec, message: str) -> None:
    assert check_scene_tasks([spec], max_objects=3) == [message]
    with pytest.raises(ValueError, match="scenes: "):
        mm.load_data("scenes", [spec], n_train=8, n_val=8)
