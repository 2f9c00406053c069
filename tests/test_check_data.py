"""``mtlsearch check-data``, ``run`` refusing bad data before Ray starts, and the
experiment file's data section (each error with file, line, field and allowed values)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from torchvision.io import write_png

import search.run._runner
import spaces
from conftest import bomb_png
from search.cli import main as cli

BASE = {
    "name": "files",
    "data": {"source": "files", "train": "train.csv", "val": "val.csv", "image_size": [8, 8]},
    "tasks": [
        {"name": "kind", "kind": "classification", "classes": 3},
        {"name": "size", "kind": "regression"},
    ],
    "backbone": {"name": "small_cnn", "options": {"widths": [4, 8]}},
    "train": {"epochs": 1, "device": "cpu"},
}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLSEARCH_CACHE_DIR", str(tmp_path / "cache"))


def write_dataset(root: Path, train_rows: str | None = None) -> None:
    for i in range(4):
        write_png(torch.full((3, 6, 6), 40 * i, dtype=torch.uint8), str(root / f"img{i}.png"))
    (root / "train.csv").write_text(train_rows or "path,kind,size\nimg0.png,0,1.0\nimg1.png,1,2.0\nimg2.png,-1,\nimg3.png,0,3.0\n")
    (root / "val.csv").write_text("img0.png 2 1.0\nimg1.png 1 0.5\n")


def write_experiment(root: Path, doc: dict | None = None) -> Path:
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(doc or BASE, sort_keys=False))
    return path


def test_check_data_prints_label_counts_missing_rates_and_imbalance(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_dataset(tmp_path)
    assert cli(["check-data", str(write_experiment(tmp_path))]) == 0
    out = capsys.readouterr().out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "kind classification train 4 3 25.0% inf 0:2 1:1 2:0" in lines
    assert "kind classification val 2 2 0.0% inf 0:0 1:1 2:1" in lines
    assert "size regression train 4 3 25.0% mean 2, std 1, range [1, 3]" in lines
    assert "- train/kind: class(es) [2] have no labelled train rows." in lines
    assert "Loader: auto -> tensors on this machine's CPU; augmentations: none" in lines
    assert lines[-1] == "OK: 6 rows checked, no problems."


def test_check_data_lists_every_problem_with_file_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_dataset(tmp_path, "path,kind,size\nimg0.png,5,1.0\nimg1.png,1,abc\nnothere.png,0,1\n")
    assert cli(["check-data", str(write_experiment(tmp_path))]) == 1  # the check ran and failed (2: a usage error)
    err = capsys.readouterr().err
    train = tmp_path / "train.csv"
    assert err.splitlines() == [
        "mtlsearch: error: 3 problems in the data (nothing was trained):",
        f"  {train}, line 2, column 2 (kind): label 5 is out of range; allowed: 0..2, or -1 or empty for missing.",
        f"  {train}, line 3, column 3 (size): value 'abc' is not a number; allowed: a finite number, or empty or nan for missing.",
        f"  {train}, line 4, column 1 (path): image '{tmp_path / 'nothere.png'}' does not exist.",
    ]


def test_run_refuses_a_bad_dataset_before_the_run_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def no_ray(*args, **kwargs):
        raise AssertionError("the run must not go on with a bad dataset")

    monkeypatch.setattr(search.run._start, "init_ray", lambda *a, **k: None)  # Ray starts while the data loads ...
    monkeypatch.setattr(search.run._runner, "init_ray", no_ray)  # ... and the run stops before it goes on
    write_dataset(tmp_path, "path,kind,size\nimg0.png,0,1.0\nimg1.png,1\n")
    out = tmp_path / "run"
    assert cli(["run", str(write_experiment(tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'train.csv'}, line 3: expected 3 columns (path, kind, size), got 2." in err
    assert not out.exists()


def test_run_refuses_a_decompression_bomb_before_the_run_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def no_ray(*args, **kwargs):
        raise AssertionError("the run must not go on with a bad dataset")

    monkeypatch.setattr(search.run._start, "init_ray", lambda *a, **k: None)  # Ray starts while the data loads ...
    monkeypatch.setattr(search.run._runner, "init_ray", no_ray)  # ... and the run stops before it goes on
    write_dataset(tmp_path, "path,kind,size\nimg0.png,0,1.0\nbomb.png,1,2.0\n")
    bomb_png(tmp_path / "bomb.png")
    out = tmp_path / "run"
    assert cli(["run", str(write_experiment(tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'train.csv'}, line 3, column 1 (path): image '{tmp_path / 'bomb.png'}' is too large: " \
        "its header claims 900,000,000 pixels, more than data.max_image_pixels = 89,478,485" in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob("cache/*.tmp"))  # the good val split may be cached; no half-written file


def with_data(**changes) -> dict:
    doc = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            doc["data"].pop(key, None)
        else:
            doc["data"][key] = value
    return doc


SCENES = {"source": "scenes", "n_train": 16, "n_val": 8}


@pytest.mark.parametrize(
    "doc,message",
    [
        (with_data(file="train.csv", split={"train": 0.6, "val": 0.4}), "data: give either file + split or train/val[/test] files, not both"),
        (with_data(train=None, val=None, file="train.csv"), "data.split: one data file needs split fractions"),
        (with_data(train=None, val=None, file="train.csv", split={"train": 0.6, "val": 0.3}), "data.split: train + val + test must be 1, got 0.6 + 0.3 + 0.0 = 0.9"),
        (with_data(train=None, val=None, file="train.csv", split={"train": 0.6, "val": 0.4, "stratify": "colour"}), "data.split.stratify: 'colour' is not a task; allowed: ['kind', 'size']"),
        (with_data(train=None, val=None, file="train.csv", split={"train": 0.6, "val": 0.4, "stratify": "size"}), "data.split.stratify: task 'size' is regression; stratify by a classification task"),
        (with_data(val="nope.csv"), "data.val: data file"),
        (with_data(delimiter=";"), "data.delimiter: Input should be 'auto', 'comma', 'tab' or 'whitespace'"),
        (with_data(loader="gpu"), "data.loader: Input should be 'auto', 'tensors' or 'stream' (got 'gpu')"),
        (with_data(augment=[{"name": "rotate"}]), "data.augment[0].name: unknown augmentation 'rotate'; allowed: brightness, hflip, random_crop"),
        (with_data(augment=[{"name": "hflip", "prob": 0.5}]), "data.augment[0]: unknown option(s) ['prob'] for augmentation 'hflip'; allowed: p, safe_for"),
        (with_data(augment=[{"name": "hflip"}]), "data.augment[0]: hflip would change the labels of task 'size' (a regressed value may be a coordinate or a left/right quantity); remove it, or list the task in safe_for"),
        (with_data(augment=[{"name": "hflip", "safe_for": ["sise"]}]), "data.augment[0].safe_for: unknown task(s) ['sise']; allowed: ['kind', 'size']"),
        ({**BASE, "data": {**SCENES}, "tasks": [{"name": "shape", "kind": "classification", "classes": 4}, {"name": "colur", "kind": "classification", "classes": 6}]}, "tasks[1]: scenes has no task 'colur'; allowed: colour, shape, size, position, count, mask, depth"),
        ({**BASE, "data": {**SCENES}, "tasks": [{"name": "shape", "kind": "classification", "classes": 3}, {"name": "size", "kind": "regression"}]}, "tasks[0]: scenes task 'shape' has 4 classes; set classes: 4 (got 3)"),
        ({**BASE, "data": {**SCENES, "augment": [{"name": "brightness"}]}, "tasks": [{"name": "colour", "kind": "classification", "classes": 6}, {"name": "size", "kind": "regression"}]}, "data.augment[0]: brightness would change the labels of task 'colour' (it is the main object's colour)"),
        ({**BASE, "data": {**SCENES, "image_size": 4}}, "data.image_size: scenes images need at least 8 pixels a side, got 4"),
        ({**BASE, "data": {"source": "multimnist", "augment": [{"name": "hflip"}]}, "tasks": [{"name": "left", "kind": "classification", "classes": 10}, {"name": "right", "kind": "classification", "classes": 10}]}, "data.augment[0]: hflip would change the labels of task 'left' (the task is the digit in one corner of the image"),
        ({**BASE, "data": {"source": "celeba", "root": "."}, "tasks": [{"name": "smiling", "kind": "classification", "classes": 2}, {"name": "glasses", "kind": "classification", "classes": 2}]}, "tasks[1]: CelebA has no task 'glasses'; a task is an attribute"),
        ({**BASE, "data": {"source": "celeba", "root": ".", "attributes": {"glasses": "Glasses"}}, "tasks": [{"name": "smiling", "kind": "classification", "classes": 2}, {"name": "glasses", "kind": "classification", "classes": 2}]}, "data.attributes: unknown CelebA attribute(s) ['Glasses']; allowed: 5_o_Clock_Shadow"),
        ({**BASE, "data": {"source": "celeba", "root": "no/such/dir"}}, "data.root: CelebA folder"),
        (with_data(max_image_pixels=0), "data.max_image_pixels: Input should be greater than 0"),
    ],
)
def test_data_section_errors_name_line_field_and_allowed_values(tmp_path: Path, doc: dict, message: str) -> None:
    write_dataset(tmp_path)
    path = write_experiment(tmp_path, doc)
    with pytest.raises(spaces.ExperimentError) as info:
        spaces.load_experiment(path)
    text = str(info.value)
    assert message in text
    assert f"{path}:" in text
