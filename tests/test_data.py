"""Datasets: the built-in MultiMNIST and the seed's data-file format."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

import mtl_models as mm

TASKS = [mm.TaskSpec("left", "classification", 10), mm.TaskSpec("right", "classification", 10)]


@pytest.fixture(scope="module")
def multimnist() -> mm.MultiTaskData:
    return mm.load_data("multimnist", TASKS, n_train=300, n_val=100, n_test=100, seed=3)


def test_multimnist_shapes_and_labels(multimnist: mm.MultiTaskData) -> None:
    train = multimnist.splits["train"]
    assert train.images.shape == (300, 1, 36, 36) and train.images.dtype == torch.uint8
    for task in ("left", "right"):
        labels = train.targets[task]
        assert labels.min() >= 0 and labels.max() <= 9
    assert len(set(train.targets["left"].tolist())) == 10


def test_multimnist_splits_use_disjoint_source_digits(multimnist: mm.MultiTaskData) -> None:
    sources = {k: set(v) for k, v in multimnist.extra["source_digits"].items()}
    assert not sources["train"] & sources["val"]
    assert not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]


def test_multimnist_is_deterministic_in_seed(multimnist: mm.MultiTaskData) -> None:
    again = mm.load_data("multimnist", TASKS, n_train=300, n_val=100, n_test=100, seed=3)
    other = mm.load_data("multimnist", TASKS, n_train=300, n_val=100, n_test=100, seed=4)
    assert torch.equal(again.splits["train"].images, multimnist.splits["train"].images)
    assert not torch.equal(other.splits["train"].images, multimnist.splits["train"].images)


def test_multimnist_places_left_digit_top_left(multimnist: mm.MultiTaskData) -> None:
    from mtl_models.data._multimnist import _mnist_digits

    digits, _ = _mnist_digits()
    images = multimnist.splits["val"].images[:, 0]
    # the top-left 8x8 corner only ever holds the left digit
    corner = images[:, :8, :8]
    assert corner.float().sum() > 0
    assert images[:, :8, 28:].sum() == 0 and images[:, 28:, :8].sum() == 0


def test_multimnist_missing_rate_hides_train_labels_of_one_task() -> None:
    data = mm.load_data("multimnist", TASKS, n_train=1000, n_val=50, n_test=0, missing_rate={"left": 0.3})
    summary = data.label_summary()
    assert 0.25 < summary["train/left"]["missing_rate"] < 0.35
    assert summary["train/right"]["missing_rate"] == 0.0
    assert summary["val/left"]["missing_rate"] == 0.0


def _write_images(root: Path, n: int, channels: int = 3) -> list[str]:
    g = torch.Generator().manual_seed(0)
    names = []
    for i in range(n):
        name = f"img{i}.png"
        write_png(torch.randint(0, 256, (channels, 10, 12), generator=g, dtype=torch.uint8), str(root / name))
        names.append(name)
    return names


FILE_TASKS = [mm.TaskSpec("kind", "classification", 3), mm.TaskSpec("size", "regression")]


@pytest.mark.parametrize("header", [True, False])
def test_data_files_load_with_missing_labels(tmp_path: Path, header: bool) -> None:
    names = _write_images(tmp_path, 4)
    rows = [f"{names[0]},0,1.5", f"{names[1]},-1,2.0", f"{names[2]},2,", f"{tmp_path / names[3]},1,nan"]
    text = ("path,kind,size\n" if header else "") + "\n".join(rows) + "\n"
    (tmp_path / "train.csv").write_text(text)
    (tmp_path / "val.csv").write_text(text)
    data = mm.load_data("files", FILE_TASKS, train=tmp_path / "train.csv", val=tmp_path / "val.csv", image_size=(8, 8))
    train = data.splits["train"]
    assert train.images.shape == (4, 3, 8, 8)
    assert train.targets["kind"].tolist() == [0, -1, 2, 1]
    size = train.targets["size"].tolist()
    assert size[:2] == [1.5, 2.0] and all(v != v for v in size[2:])  # NaN = missing


@pytest.mark.parametrize(
    "row,message",
    [
        ("img0.png,5,1.0", "line 2, column 'kind': label 5 is out of range; allowed: 0..2 or -1 for missing"),
        ("img0.png,x,1.0", "line 2, column 'kind': label 'x' is not an integer class index"),
        ("img0.png,1,abc", "line 2, column 'size': value 'abc' is not a number"),
        ("img0.png,1", "line 2: expected 3 columns (path + 2 tasks), got 2"),
        ("nothere.png,1,1.0", "line 2, column 'path': image"),
    ],
)
def test_data_file_errors_name_file_line_and_column(tmp_path: Path, row: str, message: str) -> None:
    _write_images(tmp_path, 1)
    path = tmp_path / "train.csv"
    path.write_text(f"path,kind,size\n{row}\n")
    with pytest.raises(mm.DataFileError) as info:
        mm.load_data("files", FILE_TASKS, train=path, val=path, image_size=(8, 8))
    assert str(path) in str(info.value) and message in str(info.value)


def test_corrupt_image_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    path = tmp_path / "train.csv"
    path.write_text("path,kind,size\nbad.png,1,1.0\n")
    with pytest.raises(mm.DataFileError, match="could not be decoded"):
        mm.load_data("files", FILE_TASKS, train=path, val=path, image_size=(8, 8))


def test_header_must_name_the_tasks(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("path,kind,colour\nimg0.png,1,1.0\n")
    with pytest.raises(mm.DataFileError, match=r"unknown: \['colour'\]; missing: \['size'\]"):
        mm.load_data("files", FILE_TASKS, train=path, val=path, image_size=(8, 8))
