"""Feeding batches: tensors and streamed paths agree, augmentations move dense targets along,
``auto`` follows the memory budget, and the trainer trains the same either way."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import mtl_models as mm
from mtl_models.data import (
    DataFeed,
    Split,
    build_augmentations,
    make_feeds,
    open_images_file,
    prepare_for_trials,
    resolve_loader,
)

from conftest import make_config, make_tasks, random_data

AUGMENT = [{"name": "random_crop", "padding": 2}, {"name": "hflip", "p": 0.5}, {"name": "brightness", "max_delta": 0.3}]


def _batches(feed: DataFeed, seed: int = 0) -> list[tuple[torch.Tensor, dict]]:
    return list(feed.batches(7, shuffle=True, generator=torch.Generator().manual_seed(seed), augment=True))


@pytest.mark.parametrize("workers", [0, 1])
def test_stream_and_tensors_give_identical_augmented_batches(workers: int) -> None:
    data = random_data(make_tasks(2, ("classification", "regression")), n=30)
    split = data.splits["train"]
    held = _batches(DataFeed(split, "cpu", "tensors", augment=AUGMENT))
    streamed = _batches(DataFeed(split, "cpu", "stream", num_workers=workers, augment=AUGMENT))
    assert [len(x) for x, _ in held] == [7, 7, 7, 7, 2]
    for (xa, ta), (xb, tb) in zip(held, streamed, strict=True):
        assert torch.equal(xa, xb) and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_without_augment_batches_are_the_split_rows_in_order() -> None:
    data = random_data(make_tasks(1), n=10)
    feed = DataFeed(data.splits["val"], "cpu", "stream")
    x = torch.cat([b for b, _ in feed.batches(4)])
    assert torch.equal(x, data.splits["val"].images.float() / 255)


def test_hflip_mirrors_the_image_and_dense_targets_but_not_labels() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    targets = {"seg": torch.arange(12).view(1, 3, 4), "cls": torch.tensor([1])}
    out, t = build_augmentations([{"name": "hflip", "p": 1.0}])(x, targets, torch.Generator())
    assert out[0, 0, 0].tolist() == [3.0, 2.0, 1.0, 0.0]
    assert t["seg"][0, 0].tolist() == [3, 2, 1, 0] and t["cls"].tolist() == [1]


def test_random_crop_shifts_dense_targets_and_fills_missing() -> None:
    crop = build_augmentations([{"name": "random_crop", "padding": 1, "fill": 0.5}]).steps[0]
    x = torch.ones(4, 1, 3, 3)
    targets = {"seg": torch.ones(4, 3, 3, dtype=torch.long), "depth": torch.ones(4, 1, 3, 3)}
    g = torch.Generator().manual_seed(3)
    expected = torch.randint(0, 3, (2, 4), generator=torch.Generator().manual_seed(3))
    out, t = crop(x, targets, g)
    for i in range(4):
        dy, dx = expected[:, i].tolist()
        padded_rows = {0: [0], 1: [], 2: [2]}[dy]
        padded_cols = {0: [0], 1: [], 2: [2]}[dx]
        edge = torch.zeros(3, 3, dtype=torch.bool)
        edge[padded_rows, :] = True
        edge[:, padded_cols] = True
        assert torch.equal(out[i, 0][edge], torch.full((int(edge.sum()),), 0.5))
        assert (out[i, 0][~edge] == 1).all()
        assert (t["seg"][i][edge] == -1).all() and (t["seg"][i][~edge] == 1).all()
        assert t["depth"][i, 0][edge].isnan().all() and (t["depth"][i, 0][~edge] == 1).all()


def test_augmentation_options_are_checked() -> None:
    with pytest.raises(ValueError, match="random_crop: padding must be >= 1 pixel, got 0"):
        build_augmentations([{"name": "random_crop", "padding": 0}])
    with pytest.raises(ValueError, match="Unknown augmentation 'rotate'; known augmentations: brightness, hflip, random_crop"):
        build_augmentations([{"name": "rotate"}])


@pytest.mark.parametrize("mode,budget_mb,expected", [("auto", 1.0, "tensors"), ("auto", 0.001, "stream"), ("stream", 1e6, "stream"), ("tensors", 0.001, "tensors")])
def test_auto_loader_follows_the_memory_budget(mode: str, budget_mb: float, expected: str) -> None:
    assert resolve_loader(10_000, torch.device("cpu"), mode, budget_mb) == expected
    data = random_data(make_tasks(2), n=30)  # 2 x 30 x 192 bytes of images + targets
    feeds = make_feeds(data, ["t0"], "cpu", {"mode": mode, "memory_budget_mb": budget_mb * (data.nbytes / 10_000) })
    assert {f.mode for f in feeds.values()} == {expected}
    assert set(feeds["train"].split.targets) == {"t0"}


def test_unknown_loader_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown loader 'disk'; allowed: auto, tensors, stream"):
        resolve_loader(1, torch.device("cpu"), "disk")


def test_cached_images_stay_on_disk_only_when_streamed(tmp_path: Path) -> None:
    path = tmp_path / "images.npy"
    np.save(path, np.zeros((6, 3, 4, 4), dtype=np.uint8))
    split = Split(open_images_file(path), {"t0": torch.zeros(6, dtype=torch.long)}, str(path))
    specs = [mm.TaskSpec("t0", "classification", 2)]
    data = mm.MultiTaskData(specs, {"train": split, "val": split})
    assert prepare_for_trials(data, "stream").splits["train"].images_file == str(path)
    assert prepare_for_trials(data, "tensors").splits["train"].images_file is None
    assert prepare_for_trials(data, "auto", memory_budget_mb=1).splits["train"].images_file is None
    assert prepare_for_trials(data, "auto", memory_budget_mb=1e-6).splits["train"].images_file == str(path)


@pytest.mark.parametrize("loader", [{"mode": "stream", "num_workers": 0}, {"mode": "tensors", "augment": AUGMENT}])
def test_trainer_trains_the_same_whichever_way_data_is_fed(loader: dict) -> None:
    tasks = make_tasks(2, ("classification", "regression"))
    data = random_data(tasks)
    results = []
    for feed in ({**loader, "mode": "tensors"}, loader):
        config = make_config("hard_split", tasks, loader=feed)
        mm.seed_everything(0)
        trainer = mm.Trainer(mm.build_model(config), data, config)
        results.append([trainer.train_epoch()["loss"] for _ in range(2)] + [trainer.evaluate("val")["t0"]["accuracy"]])
    assert results[0] == pytest.approx(results[1], abs=1e-6)
    assert all(math.isfinite(v) for v in results[0])
